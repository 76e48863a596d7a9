//! At least 100,000 random and mutated messages into the decoder and into `dispatch` on a real
//! manager over the fake IOMMU: no panic, every reply well formed, protocol errors exactly when
//! the decoder refuses the message, and the manager's view of the devices still agrees with the
//! IOMMU's at the end. A fixed seed keeps it reproducible.

use super::*;
use crate::fake::FakeIommu;
use core::time::Duration;
use iommu_core::{Fault, FaultReason};
use smmuman_api::header::Header;
use smmuman_api::interface::*;
use smmuman_api::message::{
    check_reply, check_request, decode_reply, encode_request, Outcome, Request,
};
use smmuman_api::{DeviceSel, FaultBatch, IovaSpan, MapFlags, ObjectFlags, ObjectId, PciMatch};

/// xorshift64*: tiny, deterministic, good enough to pick bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn encode<R: Request>(req: &R, id: u32) -> Vec<u8> {
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode_request(req, id, &mut out);
    out[..n].to_vec()
}

/// A valid request of a random op, with fields drawn around the interesting values.
fn valid_request(rng: &mut Rng, ids: &[ObjectId]) -> Vec<u8> {
    let object = rng.pick(ids);
    let sels = [
        DeviceSel::pci(pci(0, 1, 0)),
        DeviceSel::pci(pci(0, 2, 0)),
        DeviceSel::pci(pci(1, 0, 0)),
        DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        DeviceSel::Pci(PciMatch::ANY),
        DeviceSel::Mmio(GPU_BASE),
        DeviceSel::Mmio(DSP_BASE),
        DeviceSel::Sid(GPU),
        DeviceSel::Sid(DSP),
        DeviceSel::Sid(StreamId(rng.next() as u32)),
    ];
    let device = rng.pick(&sels);
    let page = |rng: &mut Rng| rng.below(64) << 12;
    let len = (rng.below(8) + 1) << 12;
    let id = rng.next() as u32;
    match rng.below(13) {
        0 => encode(&HelloRequest {}, id),
        1 => encode(
            &CreateObjectRequest {
                flags: if rng.chance(30) {
                    ObjectFlags::UNITY
                } else {
                    ObjectFlags::empty()
                },
            },
            id,
        ),
        2 => encode(&DestroyObjectRequest { object }, id),
        3 => encode(&AttachRequest { object, device }, id),
        4 => encode(&DetachRequest { object, device }, id),
        5 => {
            let iova = if rng.chance(10) {
                rng.next() & !0xfff & (u64::MAX >> 1)
            } else {
                page(rng)
            };
            let pa = 0x3ff0_0000 + (rng.below(300) << 12);
            let window = DmaWindow::new(Iova(iova), PhysAddr(pa), len).unwrap();
            let access = Access::from_bits_truncate(rng.below(7) as u8 + 1);
            let flags = if rng.chance(50) {
                MapFlags::SHARED
            } else {
                MapFlags::empty()
            };
            encode(
                &MapRequest {
                    object,
                    window,
                    access,
                    flags,
                },
                id,
            )
        }
        6 => {
            let span = IovaSpan::new(Iova(page(rng)), len * 2).unwrap();
            encode(&UnmapRequest { object, span }, id)
        }
        7 => encode(&QueryRequest {}, id),
        8 => encode(&LookupDeviceRequest { device }, id),
        9 => {
            let max = FaultBatch::new(rng.below(7) as u8 + 1).unwrap();
            encode(&ReadFaultsRequest { object, max }, id)
        }
        10 => encode(&ArmNotifyRequest { object }, id),
        11 => encode(&ObjectStatusRequest { object }, id),
        _ => encode(&StatsRequest {}, id),
    }
}

/// Breaks a message in one of the ways a buggy or hostile client would.
fn mutate(rng: &mut Rng, msg: &mut Vec<u8>) {
    match rng.below(6) {
        // Bit flips, mostly in the header.
        0 => {
            for _ in 0..=rng.below(4) {
                let at = if rng.chance(50) {
                    rng.below(16)
                } else {
                    rng.below(msg.len() as u64)
                };
                if let Some(b) = msg.get_mut(at as usize) {
                    *b ^= 1 << rng.below(8);
                }
            }
        }
        // Truncation.
        1 => msg.truncate(rng.below(msg.len() as u64 + 1) as usize),
        // Extra bytes, with or without a matching payload_len.
        2 => {
            for _ in 0..=rng.below(300) {
                msg.push(rng.next() as u8);
            }
            if rng.chance(50) && msg.len() >= 16 {
                let len = (msg.len() - 16) as u16;
                msg[8..10].copy_from_slice(&len.to_le_bytes());
            }
        }
        // A length that lies.
        3 => {
            if msg.len() >= 10 {
                let lie = rng.next() as u16;
                msg[8..10].copy_from_slice(&lie.to_le_bytes());
            }
        }
        // One byte anywhere set to an edge value.
        4 => {
            let at = rng.below(msg.len().max(1) as u64) as usize;
            if let Some(b) = msg.get_mut(at) {
                *b = rng.pick(&[0, 1, 7, 8, 31, 32, 0x7f, 0x80, 0xff]);
            }
        }
        // A valid header over a random payload of the op's size.
        _ => {
            for b in msg.iter_mut().skip(16) {
                *b = rng.next() as u8;
            }
        }
    }
}

/// Checks that the reply to `request` is well formed and agrees with the decoder.
fn check(request: &[u8], reply: &[u8]) {
    assert!(
        (16..=MAX_MESSAGE).contains(&reply.len()),
        "reply of {} bytes",
        reply.len()
    );
    let (h, outcome) = check_reply(reply)
        .unwrap_or_else(|e| panic!("malformed reply {e} to {request:02x?}: {reply:02x?}"));
    assert_eq!(
        (h.op, h.request_id),
        Header::salvage(request),
        "reply names the request"
    );
    match (check_request(request), outcome) {
        (Err(want), Outcome::Protocol(got)) => assert_eq!(got, want, "{request:02x?}"),
        (Ok(_), Outcome::Ok(()) | Outcome::Refused(_)) => {}
        (want, got) => panic!("decoder says {want:?}, dispatch said {got:?} for {request:02x?}"),
    }
}

#[test]
fn a_hundred_thousand_hostile_messages_cause_no_panic_and_only_well_formed_replies() {
    const MESSAGES: usize = 100_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut m = manager(FakeIommu::new());
    let clients = [A, B, ClientId(3)];
    let mut ids = vec![
        ObjectId(0),
        ObjectId(1),
        ObjectId(2),
        ObjectId(77),
        ObjectId::UNCLAIMED,
    ];
    let mut reply = [0u8; MAX_MESSAGE];
    let (mut protocol, mut ok, mut refused) = (0, 0, 0);
    for i in 0..MESSAGES {
        let client = rng.pick(&clients);
        let mut msg = match rng.below(10) {
            0..=1 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
            2..=6 => {
                let mut msg = valid_request(&mut rng, &ids);
                mutate(&mut rng, &mut msg);
                msg
            }
            _ => valid_request(&mut rng, &ids),
        };
        if msg.len() > MAX_MESSAGE && rng.chance(50) {
            msg.truncate(MAX_MESSAGE);
        }
        let n = m.handle(client, &msg, &mut reply);
        check(&msg, &reply[..n]);
        match check_reply(&reply[..n]).map(|(_, o)| o) {
            Ok(Outcome::Protocol(_)) => protocol += 1,
            Ok(Outcome::Refused(_)) => refused += 1,
            _ => ok += 1,
        }
        // Remember the objects that get created, so later requests can use them.
        if let Ok(r) = decode_reply::<CreateObjectRequest>(&reply[..n], Header::salvage(&msg).1) {
            ids.push(r.object);
        }
        if i % 997 == 0 {
            let sid = rng.pick(&all_sids());
            m.backend_mut().inject_fault(Fault {
                sid,
                addr: Iova(rng.next()),
                dir: None,
                reason: FaultReason::Translation,
                code: 0x10,
            });
            m.on_iommu_event(Duration::from_nanos(i as u64)).unwrap();
            while m.take_notification().is_some() {}
        }
        if i % 4999 == 0 {
            m.client_gone(rng.pick(&clients));
        }
    }
    // Every class of outcome was exercised.
    assert!(
        protocol > 10_000 && ok > 10_000 && refused > 10_000,
        "{protocol} {ok} {refused}"
    );
    assert!(ids.len() > 20, "objects were created along the way");

    // The manager still agrees with the IOMMU about every device.
    for d in board() {
        let sel = match d.id {
            crate::config::DeviceId::Pci(bdf) => DeviceSel::pci(bdf),
            crate::config::DeviceId::Mmio(base) => DeviceSel::Mmio(base),
        };
        // Only the client it is assigned to hears whether it is held; nobody's device (its
        // client went away) is in deny.
        let held = clients.into_iter().find_map(|c| {
            let l = smmuman_api::Client::connect(Direct(&mut m, c))
                .unwrap()
                .lookup_device(sel)
                .unwrap();
            (l.not_assigned == 0).then_some(l.free == 0)
        });
        let attached = m.backend().domain_of(d.sid).is_some();
        assert_eq!(held.unwrap_or(false), attached, "{}", d.id);
    }
    for c in clients {
        m.client_gone(c);
    }
    for sid in all_sids() {
        assert_eq!(m.backend().domain_of(sid), None, "{sid} back to deny");
    }
    assert_eq!(m.backend().live_domains(), 0);
}

#[test]
fn the_client_survives_hostile_replies() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut m = manager(FakeIommu::new());
    let mut reply = [0u8; MAX_MESSAGE];
    let requests: Vec<Vec<u8>> = (0..64)
        .map(|_| valid_request(&mut rng, &[ObjectId(1)]))
        .collect();
    let mut refused_replies = 0;
    for i in 0..20_000 {
        let req = &requests[i % requests.len()];
        let n = m.handle(A, req, &mut reply);
        let mut bytes = reply[..n].to_vec();
        if rng.chance(90) {
            mutate(&mut rng, &mut bytes);
        }
        let id = Header::salvage(req).1;
        // Every reply decoder of the op table must refuse or accept without panicking.
        let results = [
            decode_reply::<HelloRequest>(&bytes, id).is_err(),
            decode_reply::<AttachRequest>(&bytes, id).is_err(),
            decode_reply::<QueryRequest>(&bytes, id).is_err(),
            decode_reply::<ReadFaultsRequest>(&bytes, id).is_err(),
            decode_reply::<ObjectStatusRequest>(&bytes, id).is_err(),
            decode_reply::<StatsRequest>(&bytes, id).is_err(),
            check_reply(&bytes).is_err(),
        ];
        refused_replies += results.iter().filter(|e| **e).count();
    }
    assert!(refused_replies > 20_000);
}
