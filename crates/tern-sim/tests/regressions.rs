//! Every bug the simulator found, pinned to the seed and options that
//! found it. Each of these failed before its fix (named by the commit
//! subject) and must pass from then on. A seed's run changes whenever the
//! simulator's draws change, so a later reshuffle can make one of these
//! pass trivially; the focused unit test each fix brought along in its own
//! crate keeps guarding the bug itself.

use tern_sim::{FaultProfile, Options, run};

fn replay(seed: u64, clients: usize, steps: usize, faults: FaultProfile) {
    let options = Options {
        clients,
        steps,
        faults,
        ..Options::default()
    };
    if let Err(f) = run(seed, &options) {
        panic!("\n{f}");
    }
}

/// tern-session: publish the will after DISCONNECT with any reason but 0x00.
/// (wills: a client disconnecting with 0x80 lost its will.)
#[test]
fn will_after_disconnect_with_an_error_code() {
    replay(4, 6, 450, FaultProfile::NONE);
}

/// tern-session: count Receive Maximum per connection, not flows left from
/// the last. (bounds: a client with a lower Receive Maximum than before
/// closed with 0x93 as the broker resent its window.)
#[test]
fn receive_maximum_per_connection() {
    replay(48, 6, 600, FaultProfile::LIGHT);
}

/// tern-session: do not hold MQTT 3.1.1 clients to a Receive Maximum.
/// (bounds: the broker closed a 3.1.1 client with 0x93.)
#[test]
fn no_receive_maximum_for_mqtt_3_1_1() {
    replay(67, 3, 300, FaultProfile::LIGHT);
}

/// tern-broker: a retained copy's expiry keeps counting from when it was
/// stored. (expiry: a retained copy sent with too long an interval, or
/// after it expired.)
#[test]
fn retained_copy_expires_on_time() {
    replay(133, 8, 300, FaultProfile::LIGHT);
}

/// tern-session: a message sent again after session loss keeps its expiry.
/// (expiry: a client sent a message long after it expired.)
#[test]
fn resent_message_keeps_its_expiry() {
    replay(3, 8, 112, FaultProfile::LIGHT);
}

/// tern-session: tell the client application when a queued message
/// expires. (packet identifiers: flows left open forever.)
#[test]
fn expired_queued_message_is_reported() {
    replay(40, 7, 112, FaultProfile::LIGHT);
}

/// tern-broker: store offline sessions on shutdown, with what was queued
/// since. (delivery: a durable subscriber lost QoS 1/2 messages across a
/// broker restart.)
#[test]
fn restart_keeps_messages_queued_for_offline_sessions() {
    replay(18, 7, 150, FaultProfile::HEAVY);
}

/// tern-broker: a graceful restart keeps offline sessions' end and pending
/// wills. (wills: a delayed will lost across a broker restart.)
#[test]
fn restart_keeps_pending_wills_and_session_ends() {
    replay(124, 7, 600, FaultProfile::HEAVY);
}

/// tern-session: a clean start discards incoming QoS 2 state when it is
/// sent. (liveness: a client kept incoming QoS 2 state the broker no longer
/// had, after losing the CONNACK of a clean start.)
#[test]
fn clean_start_discards_incoming_qos2_state() {
    replay(2169, 8, 600, FaultProfile::HEAVY);
}

/// tern-session: a client that keeps sending still notices a silent server.
/// (liveness: a half-open link never noticed by a busy publisher.)
#[test]
fn busy_client_notices_a_half_open_link() {
    replay(384, 7, 150, FaultProfile::LIGHT);
}

/// tern-session: after asking for a clean start, do not resume until a
/// CONNACK answers. (integrity: a QoS 2 message delivered twice.)
#[test]
fn unanswered_clean_start_is_not_resumed() {
    replay(1118, 8, 300, FaultProfile::HEAVY);
}

/// tern-session: drop-oldest reports every message it drops. (delivery: a
/// durable subscriber missed more messages than its session said it had
/// dropped.)
#[test]
fn drop_oldest_counts_every_dropped_message() {
    replay(9462, 8, 600, FaultProfile::LIGHT);
}

/// tern-session: a topic alias never pushes a PUBLISH over the peer's
/// maximum size. (bounds: a client closed with 0x95, the broker's packet
/// one alias property over its Maximum Packet Size.)
#[test]
fn topic_alias_within_maximum_packet_size() {
    replay(2204, 8, 450, FaultProfile::LIGHT);
}

/// tern-session: a QoS 2 refusal made before the resend is not lost; keep
/// a QoS 2 refusal until its PUBREC is actually sent. (integrity: a
/// refused QoS 2 message delivered again after a reconnect.)
#[test]
fn qos2_refusal_survives_a_reconnect() {
    replay(327, 8, 168, FaultProfile::HEAVY);
}

/// tern-broker: recount a connection's memory when its session drops
/// messages on the way out. (bounds: the memory account's running sums
/// stayed above a recount after a message too large for the client was
/// dropped; core test `core_memory.rs::a_message_dropped_on_the_way_out_leaves_the_account`.)
#[test]
fn memory_account_follows_drops_on_the_way_out() {
    replay(5, 8, 600, FaultProfile::LIGHT);
}

/// tern-session/tern-broker: a QoS 2 PUBLISH refused at the memory budget
/// on an MQTT 3.1.1 connection (closed, no refusal code) left its packet
/// identifier awaiting the application, so every resend was swallowed as a
/// duplicate. (delivery: a durable subscriber never got two messages;
/// core test `core_memory.rs::a_qos2_publish_refused_at_the_budget_can_be_sent_again`.)
#[test]
fn refused_qos2_publish_can_be_sent_again() {
    replay(1, 8, 600, FaultProfile::LIGHT);
}
