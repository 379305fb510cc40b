//! A batch call in each contract version's own form: the entries encoded for it, the
//! call, and its decisions split, still undecoded.

use super::super::error::{CallError, CallErrorKind};
use super::super::executor::Lane;
use super::super::model::{Entry, MappingContext};
use super::super::{v0_1_0, v0_2_0, v0_3_0};
use super::batch::{MappedBatch, RawBatch, RawForm};
use super::{Instance, Plugin};

impl Plugin {
    pub(super) async fn map_entries_v0_1(
        &self,
        context: &MappingContext,
        entries: Vec<Entry>,
    ) -> Result<MappedBatch, CallError> {
        const FUNCTION: &str = "map-entries";
        let guest_context: v0_1_0::abacsync::mapping::types::MappingContext = context.into();
        let guest_entries: Vec<v0_1_0::abacsync::mapping::types::Entry> =
            entries.into_iter().map(Into::into).collect();
        let (result, stats, logs) = self
            .call(
                Lane::Tenant(context.tenant_id),
                FUNCTION,
                move |store, instance| match instance {
                    Instance::V0_1(plugin) => plugin.abacsync_mapping_mapper().call_map_entries(
                        store,
                        &guest_context,
                        &guest_entries,
                    ),
                    Instance::V0_2(_) | Instance::V0_3(_) => {
                        Err(wasmtime::Error::msg("not a contract 0.1.0 plugin"))
                    }
                },
            )
            .await?;
        let results = result.map_err(|error| self.refused(FUNCTION, error.into()))?;
        let outcomes = results
            .into_iter()
            .map(v0_1_0::decision_from_guest)
            .collect();
        Ok((
            FUNCTION,
            RawBatch {
                form: RawForm::Decoded(outcomes),
                stats,
                logs,
            },
        ))
    }

    pub(super) async fn map_batch_v0_2(
        &self,
        context: &MappingContext,
        entries: &[Entry],
    ) -> Result<MappedBatch, CallError> {
        const FUNCTION: &str = "map-batch";
        let declared = self.declared(context).await?;
        let json = v0_2_0::encode_entries(entries, &declared).map_err(|err| {
            self.error(
                FUNCTION,
                CallErrorKind::Trap(format!("encoding the entries: {err}")),
                String::new(),
            )
        })?;
        let guest_context: v0_2_0::abacsync::mapping::types::MappingContext = context.into();
        let (result, stats, logs) = self
            .call(
                Lane::Tenant(context.tenant_id),
                FUNCTION,
                move |store, instance| match instance {
                    Instance::V0_2(plugin) => plugin.abacsync_mapping_mapper().call_map_batch(
                        store,
                        &guest_context,
                        &json,
                    ),
                    Instance::V0_1(_) | Instance::V0_3(_) => {
                        Err(wasmtime::Error::msg("not a contract 0.2.0 plugin"))
                    }
                },
            )
            .await?;
        let results = result.map_err(|error| self.refused(FUNCTION, error.into()))?;
        let spans = v0_2_0::split_results(&results, entries.len())
            .map_err(|err| self.error(FUNCTION, err.into_kind(entries.len()), String::new()))?;
        Ok((
            FUNCTION,
            RawBatch {
                form: RawForm::Json {
                    text: results,
                    spans,
                },
                stats,
                logs,
            },
        ))
    }

    pub(super) async fn map_batch_v0_3(
        &self,
        context: &MappingContext,
        entries: Vec<Entry>,
    ) -> Result<MappedBatch, CallError> {
        const FUNCTION: &str = "map-batch";
        let declared = self.declared(context).await?;
        let expected = entries.len();
        let batch = v0_3_0::encode_entries(entries, &declared);
        let guest_context: v0_3_0::abacsync::mapping::types::MappingContext = context.into();
        let (result, stats, logs) = self
            .call(
                Lane::Tenant(context.tenant_id),
                FUNCTION,
                move |store, instance| match instance {
                    Instance::V0_3(plugin) => plugin.abacsync_mapping_mapper().call_map_batch(
                        store,
                        &guest_context,
                        &batch,
                    ),
                    Instance::V0_1(_) | Instance::V0_2(_) => {
                        Err(wasmtime::Error::msg("not a contract 0.3.0 plugin"))
                    }
                },
            )
            .await?;
        let decisions = result.map_err(|error| self.refused(FUNCTION, error.into()))?;
        let spans = v0_3_0::split_decisions(&decisions, expected)
            .map_err(|err| self.error(FUNCTION, err.into_kind(expected), String::new()))?;
        Ok((
            FUNCTION,
            RawBatch {
                form: RawForm::Columns {
                    batch: decisions,
                    spans,
                },
                stats,
                logs,
            },
        ))
    }
}
