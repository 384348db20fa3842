//! A freestanding program over the sans-IO crates: `#![no_std]`,
//! `#![no_main]`, only `alloc`, a bump allocator and a panic handler of its
//! own. It is built, never run: linking it proves tern-codec, tern-topic and
//! tern-session (with default features off) need nothing from std.

#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::{
    alloc::{GlobalAlloc, Layout},
    cell::UnsafeCell,
    sync::atomic::{AtomicUsize, Ordering},
};
use tern_codec::{MqttString, Packet, ProtocolVersion, Publish, QoS};
use tern_session::{ClientConnection, ClientSession, ConnectOptions, Instant};
use tern_topic::{MatchBuffer, SubscriptionFilter, SubscriptionTree, TopicName};

/// A bump allocator over a static arena: enough to link against, never freed.
struct Bump {
    arena: UnsafeCell<[u8; 1 << 20]>,
    next: AtomicUsize,
}

// SAFETY: `next` hands out disjoint ranges of the arena atomically.
unsafe impl Sync for Bump {}

// SAFETY: every returned pointer is aligned, inside the arena, and never
// handed out twice; `dealloc` does nothing.
unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.arena.get() as usize;
        let mut offset = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + offset).next_multiple_of(layout.align()) - base;
            let end = match start.checked_add(layout.size()) {
                Some(end) if end <= 1 << 20 => end,
                _ => return core::ptr::null_mut(),
            };
            match self
                .next
                .compare_exchange(offset, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(now) => offset = now,
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[global_allocator]
static ALLOCATOR: Bump = Bump {
    arena: UnsafeCell::new([0; 1 << 20]),
    next: AtomicUsize::new(0),
};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

/// The precompiled `alloc` was built to unwind and names the personality
/// routine; with `panic = "abort"` nothing ever calls it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

/// Uses each crate: encodes and decodes a PUBLISH, routes it through a
/// subscription tree, and starts a client connection.
fn exercise() -> usize {
    let publish = Publish {
        topic: MqttString::from_static("a/b"),
        qos: QoS::AtLeastOnce,
        packet_id: core::num::NonZeroU16::new(1),
        payload: "hi".into(),
        ..Publish::default()
    };
    let mut wire = tern_codec::bytes::BytesMut::new();
    let _ = Packet::from(publish).encode(ProtocolVersion::V5, &mut wire);
    let decoded = Packet::decode(&mut wire, ProtocolVersion::V5, 1 << 16);

    let mut tree = SubscriptionTree::new();
    let mut routed = 0;
    if let (Ok(filter), Ok(topic)) = (
        SubscriptionFilter::parse_str("a/+"),
        TopicName::try_from("a/b"),
    ) {
        tree.insert(7u32, &filter, 1u8);
        let mut buffer = MatchBuffer::new();
        routed = tree.matches(&topic, &mut buffer).per_client().count();
    }

    let now = Instant::ZERO;
    let mut client = ClientConnection::new(
        now,
        ConnectOptions::new(MqttString::from_static("nostd")),
        ClientSession::new(),
    );
    let mut sent = Vec::new();
    while let Some(packet) = client.poll_transmit(now) {
        sent.push(packet);
    }
    usize::from(matches!(decoded, Ok(Some(_)))) + routed + sent.len()
}

/// The entry point (no C runtime): never run, only linked.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let _ = core::hint::black_box(exercise());
    loop {
        core::hint::spin_loop();
    }
}
