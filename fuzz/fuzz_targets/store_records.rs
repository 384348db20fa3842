//! tern-store's record decoders (the values a data directory holds, read at
//! start-up and by `tern store check`/`dump`) on arbitrary bytes: never a
//! panic, and whatever decodes re-encodes to the same bytes (a value has
//! one encoding, so a damaged one cannot pass as another record).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_store::record::{BodyRecord, QueueRecord, Record, SessionRecord, SubscriptionRecord};

fn check<R: Record + core::fmt::Debug>(data: &[u8]) {
    if let Ok(r) = R::decode(data) {
        assert_eq!(r.encode(), data, "{r:?} re-encodes differently");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<SessionRecord>(data);
    check::<SubscriptionRecord>(data);
    check::<BodyRecord>(data);
    check::<QueueRecord>(data);
    check::<u64>(data);
    check::<()>(data);
});
