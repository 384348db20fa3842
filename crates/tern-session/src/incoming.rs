//! Incoming application messages: the receiver side of the QoS flows
//! (MQTT 5.0 §4.3), exactly-once delivery for QoS 2, and acknowledgements in
//! the order the messages arrived [MQTT-4.6.0-2] [MQTT-4.6.0-3].

use alloc::collections::{BTreeMap, VecDeque};
use tern_codec::{PacketId, QoS, ReasonCode};

/// A receipt the application returns to acknowledge a message itself.
///
/// Returned with each QoS 1 and QoS 2 message when manual acknowledgement is
/// on. A token for a QoS 1 message is only good on the connection that
/// delivered it (the peer resends the message on the next one); a QoS 2
/// token stays good until the flow completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub(crate) packet_id: PacketId,
    pub(crate) qos: QoS,
    pub(crate) epoch: u32,
}

impl AckToken {
    /// The message's packet identifier.
    pub fn packet_id(&self) -> PacketId {
        self.packet_id
    }

    /// The message's QoS (1 or 2).
    pub fn qos(&self) -> QoS {
        self.qos
    }
}

/// Where an incoming QoS 2 message stands; survives reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) enum Qos2State {
    /// Delivered to the application, which has not acknowledged it yet.
    AwaitingApp,
    /// PUBREC decided (success); waiting for PUBREL.
    Received,
    /// Refused by the application (this failing reason code) before the
    /// PUBLISH was resent on the current connection: the resend gets the
    /// failing PUBREC, which ends the flow.
    Refused(ReasonCode),
}

impl Qos2State {
    /// Where a message stands once the application decided its PUBREC: a
    /// failed PUBREC ends the flow once sent, so a resend is then a new
    /// message [MQTT-4.3.3-9]; until then the refusal is remembered, so a
    /// resend gets it instead of being delivered again. (MQTT 3.x cannot
    /// refuse: its PUBREC always accepts.)
    pub(crate) fn decided(reason: ReasonCode, v5: bool) -> Self {
        if reason.is_success() || !v5 {
            Qos2State::Received
        } else {
            Qos2State::Refused(reason)
        }
    }
}

/// The receiver state that belongs to the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Incoming {
    /// QoS 2 messages received and not yet released by PUBREL.
    pub(crate) qos2: BTreeMap<PacketId, Qos2State>,
}

impl Incoming {
    /// Forgets the QoS 2 message `token` names if the application has not
    /// decided it yet (see `ServerConnection::drop_unanswered`).
    pub(crate) fn forget_awaiting(&mut self, token: AckToken) {
        if token.qos == QoS::ExactlyOnce
            && self.qos2.get(&token.packet_id) == Some(&Qos2State::AwaitingApp)
        {
            self.qos2.remove(&token.packet_id);
        }
    }
}

/// An acknowledgement owed on this connection, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingAck {
    pub(crate) packet_id: PacketId,
    pub(crate) qos: QoS,
    /// `None` until the application (or auto-ack) decides.
    pub(crate) reason: Option<ReasonCode>,
}

/// The acknowledgements owed on one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckQueue {
    entries: VecDeque<PendingAck>,
    /// How many entries are QoS 1.
    qos1: usize,
}

impl AckQueue {
    pub(crate) fn push(&mut self, ack: PendingAck) {
        self.qos1 += usize::from(ack.qos == QoS::AtLeastOnce);
        self.entries.push_back(ack);
    }

    /// QoS 1 messages not yet acknowledged: they count against our Receive Maximum.
    pub(crate) fn qos1_pending(&self) -> usize {
        self.entries
            .iter()
            .filter(|a| a.qos == QoS::AtLeastOnce)
            .count()
    }

    /// Whether an undecided acknowledgement for this message is queued.
    pub(crate) fn has_undecided(&self, packet_id: PacketId, qos: QoS) -> bool {
        self.entries
            .iter()
            .any(|a| a.packet_id == packet_id && a.qos == qos && a.reason.is_none())
    }

    /// Records the decision for the oldest undecided acknowledgement of this
    /// message; `false` if there is none.
    pub(crate) fn decide(&mut self, packet_id: PacketId, qos: QoS, reason: ReasonCode) -> bool {
        match self
            .entries
            .iter_mut()
            .find(|a| a.packet_id == packet_id && a.qos == qos && a.reason.is_none())
        {
            Some(a) => {
                a.reason = Some(reason);
                true
            }
            None => false,
        }
    }

    /// The next acknowledgement ready to send: only from the front, so
    /// acknowledgements leave in arrival order.
    pub(crate) fn pop_ready(&mut self) -> Option<(PacketId, QoS, ReasonCode)> {
        let front = self.entries.front()?;
        let reason = front.reason?;
        let (id, qos) = (front.packet_id, front.qos);
        self.qos1 -= usize::from(qos == QoS::AtLeastOnce);
        self.entries.pop_front();
        Some((id, qos, reason))
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn acks_leave_in_arrival_order_whatever_order_they_are_decided() {
        // [MQTT-4.6.0-2]: PUBACKs in the order the PUBLISHes were received.
        let mut q = AckQueue::default();
        for n in 1..=3 {
            q.push(PendingAck {
                packet_id: id(n),
                qos: QoS::AtLeastOnce,
                reason: None,
            });
        }
        assert!(q.decide(id(3), QoS::AtLeastOnce, ReasonCode::Success));
        assert!(q.decide(id(2), QoS::AtLeastOnce, ReasonCode::Success));
        assert_eq!(q.pop_ready(), None, "1 is undecided and blocks 2 and 3");
        assert!(q.decide(id(1), QoS::AtLeastOnce, ReasonCode::NotAuthorized));
        assert_eq!(
            q.pop_ready(),
            Some((id(1), QoS::AtLeastOnce, ReasonCode::NotAuthorized))
        );
        assert_eq!(q.pop_ready().map(|a| a.0), Some(id(2)));
        assert_eq!(q.pop_ready().map(|a| a.0), Some(id(3)));
        assert_eq!(q.pop_ready(), None);
        assert!(!q.decide(id(3), QoS::AtLeastOnce, ReasonCode::Success));
    }
}
