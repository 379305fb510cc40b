//! The store's contract, checked against every backend: each check takes a fresh,
//! empty store of the backend under test and uses nothing but the store traits, so
//! that a backend passes exactly when it behaves as the others. A backend's tests
//! instantiate the whole suite with [`suite!`] and a way to open an empty store.
//!
//! The checks live by area: [`users`] (reads), [`apply`] (changes and their audit
//! events), [`history`] (audit queries, sync state and runs, pruning), [`catalog`],
//! [`accounts`] and [`tasks`].

pub(crate) mod accounts;
pub(crate) mod apply;
pub(crate) mod catalog;
pub(crate) mod history;
pub(crate) mod tasks;
pub(crate) mod users;

/// Everything a backend implements.
pub(crate) use super::Store as Backend;

/// One `#[test]` per check of the suite, each on a store `$open` makes: add a line
/// here for every check.
macro_rules! suite {
    ($open:expr) => {
        $crate::store::conformance::checks! { $open;
            users::a_created_user_reads_back_as_written,
            users::lookups_by_ldap_id_and_username,
            users::lookups_take_any_number_of_names,
            users::find_users_matches_any_identifier_once,
            users::list_users_filters_by_attribute_activity_and_text,
            users::list_users_pages_by_id,
            users::a_tenant_neither_sees_nor_changes_another_tenants_users,
            users::huge_tenant_ids_are_distinct,
            apply::create_records_the_user_and_one_event_with_its_values,
            apply::a_user_created_without_values_has_an_empty_object,
            apply::apply_returns_ids_in_change_order,
            apply::update_records_changed_fields,
            apply::an_update_without_changes_writes_nothing,
            apply::an_update_of_many_keys_records_every_event_in_order,
            apply::deactivate_and_reactivate,
            apply::avatars_are_set_kept_and_cleared,
            apply::a_taken_ldap_id_is_a_conflict_on_create_and_update,
            apply::a_duplicate_within_the_batch_is_a_conflict,
            apply::an_unknown_user_rolls_the_batch_back,
            apply::the_mapped_digest_is_stored_kept_and_forgotten,
            apply::the_tenant_usage_follows_every_write_and_matches_a_recount,
            apply::a_batch_of_updates_equals_the_updates_one_by_one,
            history::events_filter_and_page_newest_first,
            history::the_limit_is_capped,
            history::history_is_pruned_by_count_and_by_age_oldest_first,
            history::state_defaults_then_upserts,
            history::runs_are_listed_newest_first_per_tenant,
            history::runs_beyond_the_number_kept_are_pruned,
            catalog::the_catalog_generation_moves_with_every_tenant_change,
            catalog::a_tenants_plugins_stay_within_their_quota,
            catalog::a_plugin_is_suspended_once_after_failures_in_a_row_and_resumed,
            accounts::the_first_shared_secret_stored_is_everyones,
            accounts::attempts_are_counted_per_scope_and_key_until_they_expire,
            accounts::attempt_keys_may_hold_any_character,
            tasks::task_leases_are_renewed_by_their_owner_and_expired_ones_interrupted,
            tasks::a_tenant_runs_one_sync_across_replicas_and_a_dead_ones_run_is_taken_over,
            tasks::each_schedule_period_is_claimed_once,
            tasks::one_replica_watches_a_tenant_until_its_lease_runs_out,
            tasks::a_cancel_ends_a_queued_task_and_asks_a_running_one,
            tasks::an_identical_queued_task_is_found_to_join,
            tasks::a_dead_replicas_tasks_are_taken_over_once_and_a_bounded_number_of_times,
            tasks::a_task_handed_back_is_taken_over_at_once_by_another_replica,
            tasks::the_queue_gives_each_task_to_one_replica_one_task_of_a_tenant_at_a_time,
            tasks::a_tasks_results_are_kept_in_pages_and_go_with_it,
        }
    };
}
pub(crate) use suite;

/// The expansion of [`suite!`]: a `conformance` module with a `#[test]` calling each
/// `area::check` on a store `$open` makes.
macro_rules! checks {
    ($open:expr; $($area:ident::$check:ident),* $(,)?) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $check() {
                    $crate::store::conformance::$area::$check(&$open);
                }
            )*
        }
    };
}
pub(crate) use checks;
