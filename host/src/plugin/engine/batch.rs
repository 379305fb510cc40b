//! A batch call's decisions as the plugin returned them, by contract version, read
//! (the ids a decision names, the text its digest reads) or decoded on demand.

use super::super::model::{Decision, DecisionIds, EntryOutcome, GuestLog};
use super::super::{v0_2_0, v0_3_0};
use super::CallStats;

/// A batch's function name, outcomes, cost and logs, before the common checks.
pub(super) type MappedBatch = (&'static str, RawBatch);

/// A batch call's decisions as the plugin returned them, one per entry, decoded on
/// demand ([`RawDecision::decode`]).
pub struct RawBatch {
    pub(super) form: RawForm,
    /// What the call cost.
    pub stats: CallStats,
    /// What the plugin logged.
    pub logs: Vec<GuestLog>,
}

pub(super) enum RawForm {
    /// Contract 0.1.0: WIT values, decoded by the bindings.
    Decoded(Vec<EntryOutcome>),
    /// Contract 0.2.0: one JSON array, each element at its span.
    Json {
        text: String,
        spans: Vec<std::ops::Range<usize>>,
    },
    /// Contract 0.3.0: the decisions' columns, each decision at its span.
    Columns {
        batch: v0_3_0::DecisionBatch,
        spans: Vec<v0_3_0::Span>,
    },
}

impl RawForm {
    pub(super) fn len(&self) -> usize {
        match self {
            RawForm::Decoded(outcomes) => outcomes.len(),
            RawForm::Json { spans, .. } => spans.len(),
            RawForm::Columns { spans, .. } => spans.len(),
        }
    }
}

impl RawBatch {
    /// Every decision decoded and checked against the contract.
    pub fn decode(self) -> BatchOutput {
        let outcomes = match self.form {
            RawForm::Decoded(outcomes) => outcomes,
            RawForm::Json { text, spans } => spans
                .into_iter()
                .map(|span| v0_2_0::decode_result(&text[span]))
                .collect(),
            RawForm::Columns { batch, spans } => spans
                .into_iter()
                .map(|span| {
                    v0_3_0::decode_decision(&batch.shapes[span.shapes], &batch.texts[span.texts])
                })
                .collect(),
        };
        BatchOutput {
            outcomes,
            stats: self.stats,
            logs: self.logs,
        }
    }

    /// The decisions, in entry order.
    pub fn decisions(&self) -> Vec<RawDecision<'_>> {
        match &self.form {
            RawForm::Decoded(outcomes) => outcomes.iter().map(RawDecision::Decoded).collect(),
            RawForm::Json { text, spans } => spans
                .iter()
                .map(|span| RawDecision::Json(&text[span.clone()]))
                .collect(),
            RawForm::Columns { batch, spans } => spans
                .iter()
                .map(|span| RawDecision::Columns {
                    shapes: &batch.shapes[span.shapes.clone()],
                    texts: &batch.texts[span.texts.clone()],
                })
                .collect(),
        }
    }
}

/// One entry's decision as the plugin returned it.
#[derive(Debug, Clone, Copy)]
pub enum RawDecision<'a> {
    /// Decoded already (contract 0.1.0).
    Decoded(&'a EntryOutcome),
    /// The JSON element (contract 0.2.0).
    Json(&'a str),
    /// The decision's numbers and texts, each text followed by a NUL (contract 0.3.0).
    Columns {
        /// Its numbers.
        shapes: &'a [u32],
        /// Its texts.
        texts: &'a str,
    },
}

impl RawDecision<'_> {
    /// The ids the decision names, when it is an upsert or a deactivation.
    pub fn ids(&self) -> Option<DecisionIds> {
        match self {
            RawDecision::Decoded(Ok(Decision::Upsert(user))) => Some(DecisionIds::Upsert {
                ldap_id: user.ldap_id.clone(),
                username: user.username.clone(),
            }),
            RawDecision::Decoded(Ok(Decision::Deactivate { ldap_id, .. })) => {
                Some(DecisionIds::Deactivate {
                    ldap_id: ldap_id.clone(),
                })
            }
            RawDecision::Decoded(_) => None,
            RawDecision::Json(text) => v0_2_0::peek_result(text),
            RawDecision::Columns { shapes, texts } => v0_3_0::peek_decision(shapes, texts),
        }
    }

    /// The decision, checked against the contract.
    pub fn decode(self) -> EntryOutcome {
        match self {
            RawDecision::Decoded(outcome) => outcome.clone(),
            RawDecision::Json(text) => v0_2_0::decode_result(text),
            RawDecision::Columns { shapes, texts } => v0_3_0::decode_decision(shapes, texts),
        }
    }
}

/// The outcome of mapping one batch.
#[derive(Debug)]
pub struct BatchOutput {
    /// One result per entry, in order.
    pub outcomes: Vec<EntryOutcome>,
    /// What the call cost.
    pub stats: CallStats,
    /// What the plugin logged.
    pub logs: Vec<GuestLog>,
}
