//! The batch both durability tests write (the kill -9 test and, inside the
//! crate, the power-loss simulation): the shape of a broker's writes, with
//! bodies shared by queue entries and deliveries deleted soon after. The
//! including module imports `Op` and the record types.

use super::{BodyRecord, Delivery, Op, QueueRecord, SessionRecord};

/// Batch `seq`: session `s{seq}` (protocol level `protocol`) with two queue
/// entries sharing one body of `payload_len` bytes, and the delivery
/// (deletion) of batch `seq - 2`'s first entry.
pub(crate) fn batch(seq: u64, protocol: u8, payload_len: usize) -> Vec<Op> {
    let c = format!("s{seq}");
    let mut ops = vec![
        Op::PutSession(SessionRecord {
            client_id: c.clone(),
            protocol,
            expiry_interval: u32::MAX,
            expires_at_ms: None,
            user_name: None,
            will: None,
            will_due_ms: None,
        }),
        Op::PutBody {
            id: seq,
            body: BodyRecord {
                topic: format!("t/{seq}"),
                payload: vec![seq as u8; payload_len],
                qos: 1,
                retain: false,
                properties: vec![],
                expires_at_ms: None,
                owner: None,
            },
        },
    ];
    for q in 0..2 {
        ops.push(Op::PutQueue {
            client_id: c.clone(),
            seq: q,
            record: QueueRecord {
                body: seq,
                qos: 1,
                delivery: Delivery::Queued,
                subscription_ids: Vec::new(),
            },
        });
    }
    if seq > 2 {
        ops.push(Op::DeleteQueue {
            client_id: format!("s{}", seq - 2),
            seq: 0,
        });
    }
    ops
}
