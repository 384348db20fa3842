//! What another cluster node (or anyone who can publish on the cluster's
//! NATS subjects) sends: a message envelope, an interest announcement or a
//! session handed over, as arbitrary bytes. No decoder panics; a session
//! that decodes survives encode and decode unchanged; an interest that decodes
//! encodes back to exactly its bytes (the format has one spelling); an
//! envelope that decodes survives encode and decode unchanged, and its
//! topic survives the mapping onto a NATS subject and back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_cluster::envelope::{Envelope, Interest};
use tern_cluster::handover;
use tern_cluster::subject::{subject_topic, topic_subject};

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Ok(session) = handover::decode(bytes.clone()) {
        let again = handover::encode(&session).expect("a decoded session encodes");
        assert_eq!(
            handover::decode(again).as_ref(),
            Ok(&session),
            "session changes across encode and decode"
        );
    }
    if let Ok(interest) = Interest::decode(bytes.clone()) {
        assert_eq!(interest.encode(), bytes, "interest re-encodes differently");
    }
    if let Ok(envelope) = Envelope::decode(bytes) {
        let again = envelope.encode().expect("a decoded envelope encodes");
        assert_eq!(
            Envelope::decode(again).as_ref(),
            Ok(&envelope),
            "envelope changes across encode and decode"
        );
        let topic = envelope.publish.topic.as_str();
        let subject = topic_subject("tern.m", topic);
        assert_eq!(subject_topic("tern.m", &subject).as_deref(), Some(topic));
    }
});
