//! Checks of the catalog: tenants, schedules, and plugins within their quota.

use std::collections::BTreeMap;

use super::Backend;
use crate::store::testing::*;
use crate::store::*;

pub(crate) fn the_catalog_generation_moves_with_every_tenant_change(store: &dyn Backend) {
    let before = store.catalog_generation().unwrap();
    let mut schedules = store.schedules().unwrap();
    assert!(schedules.is_empty());
    store.set_schedule(T1, Some(3_600), NOW).unwrap();
    let after = store.catalog_generation().unwrap();
    assert!(after > before, "{before} → {after}");
    schedules = store.schedules().unwrap();
    assert_eq!(schedules.get(&T1), Some(&Some(3_600)));
    // Reading moves nothing.
    assert_eq!(store.catalog_generation().unwrap(), after);
}

pub(crate) fn a_tenants_plugins_stay_within_their_quota(store: &dyn Backend) {
    let quota = PluginQuota {
        max_count: 2,
        max_bytes: 10,
    };
    let upload = |tenant: Option<TenantId>, component: &[u8]| {
        store.add_plugin(
            &NewPlugin {
                sha256: format!("{:?}{component:?}", tenant),
                tenant,
                label: "p".into(),
                name: "p".into(),
                version: "1".into(),
                component,
                uploaded_by: None,
                quota: Some(quota),
            },
            NOW,
        )
    };
    let first = upload(Some(T1), b"1234").unwrap();
    // The same component again is the same plugin, even at the quota.
    assert_eq!(upload(Some(T1), b"1234").unwrap().id, first.id);
    // Bytes: 4 + 7 > 10.
    let err = upload(Some(T1), b"1234567").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OverQuota {
                quota: "tenant_plugin_bytes",
                ..
            }
        ),
        "{err}"
    );
    let second = upload(Some(T1), b"12345").unwrap();
    let err = upload(Some(T1), b"1").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OverQuota {
                quota: "tenant_plugins",
                ..
            }
        ),
        "{err}"
    );
    // Another tenant, and system-wide plugins, count apart.
    upload(Some(T2), b"1").unwrap();
    upload(None, b"12345678901").unwrap();
    // The current plugin stays; an earlier version goes, with its assignment.
    store
        .assign_plugin(T1, first.id, &BTreeMap::new(), None, "assign", NOW)
        .unwrap();
    store
        .assign_plugin(T1, second.id, &BTreeMap::new(), None, "assign", NOW)
        .unwrap();
    assert_eq!(
        store.delete_plugin(second.id).unwrap(),
        PluginDeletion::InUse(T1)
    );
    assert_eq!(
        store.delete_plugin(first.id).unwrap(),
        PluginDeletion::Deleted
    );
    assert_eq!(store.assignments(T1).unwrap().len(), 1);
    assert_eq!(
        store.delete_plugin(first.id).unwrap(),
        PluginDeletion::NotFound
    );
    upload(Some(T1), b"1").unwrap();
}

pub(crate) fn a_plugin_is_suspended_once_after_failures_in_a_row_and_resumed(store: &dyn Backend) {
    assert_eq!(
        store.plugin_health(T1).unwrap(),
        PluginHealthRecord::default()
    );
    assert!(!store.record_plugin_result(T1, Some("trap"), 3, 1).unwrap());
    assert!(
        !store.record_plugin_result(T1, None, 3, 2).unwrap(),
        "a success resets"
    );
    assert_eq!(store.plugin_health(T1).unwrap().failures, 0);
    assert!(!store.record_plugin_result(T1, Some("trap"), 3, 3).unwrap());
    assert!(!store.record_plugin_result(T1, Some("trap"), 3, 4).unwrap());
    assert!(
        store
            .record_plugin_result(T1, Some("timeout"), 3, 5)
            .unwrap()
    );
    assert!(
        !store
            .record_plugin_result(T1, Some("timeout"), 3, 6)
            .unwrap(),
        "once"
    );
    assert_eq!(
        store.plugin_health(T1).unwrap(),
        PluginHealthRecord {
            failures: 4,
            last_error: Some("timeout".into()),
            suspended: true,
        }
    );
    assert!(!store.plugin_health(T2).unwrap().suspended);
    store.resume_plugin(T1).unwrap();
    assert_eq!(
        store.plugin_health(T1).unwrap(),
        PluginHealthRecord::default()
    );
    // A bound of one suspends at the first failure.
    assert!(store.record_plugin_result(T2, Some("trap"), 1, 7).unwrap());
}
