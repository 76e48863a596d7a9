//! Both halves generated from the op table, talking through bytes only.

use super::*;
use crate::header::{Header, Status, FLAG_REPLY};
use crate::message::{check_reply, encode_request, Outcome};
use crate::wire::{Wire, HEADER_LEN, MAX_PAYLOAD};
use iommu_core::{Access, Bdf, Direction, FaultReason, Iova, PhysAddr, StreamId};
use std::collections::BTreeSet;

/// A server that answers every op with a fixed reply and remembers what it was asked.
#[derive(Default)]
struct Recorder {
    calls: Vec<(ClientId, Op)>,
    protocol_errors: Vec<ProtocolError>,
    refusals: Vec<(Op, Refusal)>,
    refuse_with: Option<Refusal>,
}

impl Recorder {
    fn note<T>(&mut self, client: ClientId, op: Op, reply: T) -> Result<T, Refusal> {
        self.calls.push((client, op));
        match self.refuse_with {
            Some(r) => Err(r),
            None => Ok(reply),
        }
    }
}

fn record(seq: u64) -> FaultRecord {
    FaultRecord {
        seq,
        time_ns: 1_000,
        addr: Iova(0x20_0000),
        addr_last: Iova(0x20_0000),
        count: 1,
        sid: StreamId(8),
        reason: FaultReason::Permission,
        dir: Some(Direction::Read),
        code: 0x13,
    }
}

impl ManagerOps for Recorder {
    fn hello(&mut self, c: ClientId, _: HelloRequest) -> Result<HelloReply, Refusal> {
        self.note(c, Op::Hello, HelloReply { client: c })
    }
    fn create_object(
        &mut self,
        c: ClientId,
        r: CreateObjectRequest,
    ) -> Result<CreateObjectReply, Refusal> {
        let object = ObjectId(if r.flags.contains(ObjectFlags::UNITY) {
            2
        } else {
            1
        });
        self.note(c, Op::CreateObject, CreateObjectReply { object })
    }
    fn destroy_object(
        &mut self,
        c: ClientId,
        _: DestroyObjectRequest,
    ) -> Result<DestroyObjectReply, Refusal> {
        self.note(c, Op::DestroyObject, DestroyObjectReply {})
    }
    fn attach(&mut self, c: ClientId, r: AttachRequest) -> Result<AttachReply, Refusal> {
        let devices = match r.device {
            DeviceSel::Pci(m) if m.is_wildcard() => 3,
            _ => 1,
        };
        self.note(c, Op::Attach, AttachReply { devices, groups: 1 })
    }
    fn detach(&mut self, c: ClientId, _: DetachRequest) -> Result<DetachReply, Refusal> {
        self.note(
            c,
            Op::Detach,
            DetachReply {
                devices: 1,
                groups: 1,
            },
        )
    }
    fn map(&mut self, c: ClientId, _: MapRequest) -> Result<MapReply, Refusal> {
        self.note(c, Op::Map, MapReply {})
    }
    fn unmap(&mut self, c: ClientId, r: UnmapRequest) -> Result<UnmapReply, Refusal> {
        self.note(
            c,
            Op::Unmap,
            UnmapReply {
                bytes: r.span.len(),
            },
        )
    }
    fn query(&mut self, c: ClientId, _: QueryRequest) -> Result<QueryReply, Refusal> {
        let reply = QueryReply {
            page_sizes: 1 << 12 | 1 << 21,
            iova_ranges: IovaRanges::new(&[IovaRange {
                first: Iova(0),
                last: Iova((1 << 40) - 1),
            }]),
            max_objects: 16,
            objects_per_client: 8,
            mappings_per_object: 32,
            fault_log_depth: 32,
            faults_per_page: FAULTS_PER_PAGE as u8,
        };
        self.note(c, Op::Query, reply)
    }
    fn lookup_device(
        &mut self,
        c: ClientId,
        _: LookupDeviceRequest,
    ) -> Result<LookupDeviceReply, Refusal> {
        let reply = LookupDeviceReply {
            devices: 2,
            groups: 1,
            not_assigned: 0,
            free: 2,
            mine: 0,
            others: 0,
            sid: StreamId(0x100),
        };
        self.note(c, Op::LookupDevice, reply)
    }
    fn read_faults(
        &mut self,
        c: ClientId,
        r: ReadFaultsRequest,
    ) -> Result<ReadFaultsReply, Refusal> {
        let mut page = FaultPage::new(4, 2);
        for s in 0..u64::from(r.max.get()) {
            page.push(record(s + 1));
        }
        self.note(c, Op::ReadFaults, ReadFaultsReply { page })
    }
    fn arm_notify(&mut self, c: ClientId, _: ArmNotifyRequest) -> Result<ArmNotifyReply, Refusal> {
        self.note(c, Op::ArmNotify, ArmNotifyReply { pending: 0 })
    }
    fn object_status(
        &mut self,
        c: ClientId,
        _: ObjectStatusRequest,
    ) -> Result<ObjectStatusReply, Refusal> {
        let reply = ObjectStatusReply {
            flags: ObjectFlags::UNITY,
            devices: 1,
            groups: 1,
            mappings: 2,
            mapped_bytes: 0x3000,
            pending: 1,
            recorded: 5,
            dropped: 0,
            next_seq: 6,
            possibly_lost: 1,
            notify: NotifyState::Armed,
        };
        self.note(c, Op::ObjectStatus, reply)
    }
    fn stats(&mut self, c: ClientId, _: StatsRequest) -> Result<StatsReply, Refusal> {
        let reply = StatsReply {
            objects: 1,
            requests: 2,
            protocol_errors: 3,
            refusals: 4,
            faults: 5,
            unclaimed: 6,
            dropped: 7,
            hw_lost_at_least: 8,
            iommu_errors: 9,
        };
        self.note(c, Op::Stats, reply)
    }
    fn map_batch(&mut self, c: ClientId, r: MapBatchRequest) -> Result<MapBatchReply, Refusal> {
        let mapped = r.windows.len() as u32;
        self.note(c, Op::MapBatch, MapBatchReply { mapped })
    }
    fn unmap_batch(
        &mut self,
        c: ClientId,
        r: UnmapBatchRequest,
    ) -> Result<UnmapBatchReply, Refusal> {
        let reply = UnmapBatchReply {
            bytes: r.spans.iter().map(|s| s.len()).sum(),
            mappings: r.spans.len() as u32,
        };
        self.note(c, Op::UnmapBatch, reply)
    }
    fn list_mappings(
        &mut self,
        c: ClientId,
        r: ListMappingsRequest,
    ) -> Result<ListMappingsReply, Refusal> {
        let mut mappings = crate::MappingPage::default();
        let w = DmaWindow::new(Iova(r.from), PhysAddr(0x8000_0000), 0x1000).unwrap();
        mappings.push(crate::MapEntry {
            window: w,
            access: Access::READ,
            flags: MapFlags::SHARED,
        });
        let reply = ListMappingsReply {
            mappings,
            next: r.from + 0x1000,
            more: true,
        };
        self.note(c, Op::ListMappings, reply)
    }
    fn protocol_error(&mut self, _: ClientId, e: &ProtocolError) {
        self.protocol_errors.push(*e);
    }
    fn refused(&mut self, _: ClientId, op: Op, r: &Refusal) {
        self.refusals.push((op, *r));
    }
}

/// A transport that hands the bytes to `dispatch` and the reply bytes back (and lets a test
/// tamper with the reply).
struct Bytes<'a> {
    server: &'a mut Recorder,
    client: ClientId,
    tamper: fn(&mut Vec<u8>),
}

impl Transport for Bytes<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut out = [0u8; MAX_MESSAGE];
        let n = dispatch(self.server, self.client, request, &mut out);
        let mut bytes = out[..n].to_vec();
        (self.tamper)(&mut bytes);
        let dst = reply
            .get_mut(..bytes.len())
            .ok_or(TransportError::ReplyTooLong { len: bytes.len() })?;
        dst.copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

fn client(server: &mut Recorder) -> Client<Bytes<'_>> {
    Client::connect(Bytes {
        server,
        client: ClientId(7),
        tamper: |_| {},
    })
    .unwrap()
}

#[test]
fn every_op_reaches_its_method_and_its_reply_comes_back() {
    let mut server = Recorder::default();
    let mut c = client(&mut server);
    assert_eq!(c.id(), ClientId(7));
    let obj = c.create_object(ObjectFlags::UNITY).unwrap().object;
    assert_eq!(obj, ObjectId(2));
    let bus1 = DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap());
    assert_eq!(c.attach(obj, bus1).unwrap().devices, 3);
    assert_eq!(
        c.detach(obj, DeviceSel::pci(Bdf::new(1, 0, 0).unwrap()))
            .unwrap()
            .groups,
        1
    );
    let w = DmaWindow::new(Iova(0x4000_0000), PhysAddr(0x4000_0000), 0x20_0000).unwrap();
    c.map(obj, w, Access::RW, MapFlags::SHARED).unwrap();
    assert_eq!(c.unmap(obj, w.span()).unwrap().bytes, 0x20_0000);
    let q = c.query().unwrap();
    assert_eq!(q.iova_ranges.as_slice()[0].last, Iova((1 << 40) - 1));
    assert_eq!(
        c.lookup_device(DeviceSel::Sid(StreamId(0x100)))
            .unwrap()
            .sid,
        StreamId(0x100)
    );
    let page = c
        .read_faults(obj, FaultBatch::new(3).unwrap())
        .unwrap()
        .page;
    assert_eq!(page.len(), 3);
    assert_eq!(page.records().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!((page.remaining(), page.dropped()), (4, 2));
    assert_eq!(c.arm_notify(obj).unwrap().pending, 0);
    assert_eq!(c.object_status(obj).unwrap().notify, NotifyState::Armed);
    assert_eq!(c.stats().unwrap().iommu_errors, 9);
    let windows = crate::MapBatch::new(&[crate::MapEntry {
        window: w,
        access: Access::RW,
        flags: MapFlags::empty(),
    }])
    .unwrap();
    assert_eq!(c.map_batch(obj, windows).unwrap().mapped, 1);
    let spans = crate::UnmapBatch::new(&[w.span(), w.span()]).unwrap();
    assert_eq!(c.unmap_batch(obj, spans).unwrap().bytes, 0x40_0000);
    let listed = c.list_mappings(obj, 0x7000).unwrap();
    assert_eq!((listed.next, listed.more), (0x8000, true));
    let first = listed.mappings.iter().next().unwrap();
    assert_eq!(
        (first.window.iova(), first.flags),
        (Iova(0x7000), MapFlags::SHARED)
    );
    c.destroy_object(obj).unwrap();

    let ops: BTreeSet<u16> = server.calls.iter().map(|(_, op)| op.number()).collect();
    let all: BTreeSet<u16> = Op::ALL.iter().map(|op| op.number()).collect();
    assert_eq!(ops, all, "every op reached its method");
    assert_eq!(server.calls.len(), Op::ALL.len());
    assert!(server.calls.iter().all(|(c, _)| *c == ClientId(7)));
    assert!(server.protocol_errors.is_empty());
}

#[test]
fn refusals_carry_their_code_and_value_to_the_client() {
    let mut server = Recorder {
        refuse_with: Some(Refusal::new(DomainError::Busy, 8)),
        ..Recorder::default()
    };
    let mut c = Client {
        transport: Bytes {
            server: &mut server,
            client: ClientId(1),
            tamper: |_| {},
        },
        id: ClientId(1),
        next_request: 1,
        buffers: crate::client::Buffers::new(),
    };
    let e = c
        .attach(ObjectId(1), DeviceSel::Sid(StreamId(8)))
        .unwrap_err();
    assert_eq!(e, CallError::Refused(Refusal::new(DomainError::Busy, 8)));
    assert_eq!(e.domain(), Some(DomainError::Busy));
    assert_eq!(e.to_string(), "refused: owned by another VM object (0x8)");
    assert_eq!(
        server.refusals,
        [(Op::Attach, Refusal::new(DomainError::Busy, 8))]
    );
}

fn raw(server: &mut Recorder, msg: &[u8]) -> (Header, Outcome<()>) {
    let mut out = [0u8; MAX_MESSAGE];
    let n = dispatch(server, ClientId(3), msg, &mut out);
    check_reply(&out[..n]).expect("dispatch always writes a well-formed reply")
}

fn request<R: message::Request>(req: &R) -> Vec<u8> {
    let mut out = [0u8; MAX_MESSAGE];
    let n = encode_request(req, 0x55, &mut out);
    out[..n].to_vec()
}

#[test]
fn malformed_requests_get_protocol_errors_and_reach_no_method() {
    let mut server = Recorder::default();
    let good = request(&DestroyObjectRequest {
        object: ObjectId(1),
    });

    let mut unknown = good.clone();
    unknown[4] = 99;
    let (h, o) = raw(&mut server, &unknown);
    assert_eq!((h.op, h.request_id), (99, 0x55));
    assert_eq!(o, Outcome::Protocol(ProtocolError::UnknownOp { op: 99 }));

    let mut version = good.clone();
    version[2] = 9;
    let (_, o) = raw(&mut server, &version);
    assert_eq!(
        o,
        Outcome::Protocol(ProtocolError::BadVersion {
            got: 9,
            supported: VERSION
        })
    );

    // The header says 4 payload bytes but the op needs... 4; give it 5 with a matching header.
    let mut long = good.clone();
    long.push(0);
    long[8] = 5;
    let (_, o) = raw(&mut server, &long);
    assert_eq!(
        o,
        Outcome::Protocol(ProtocolError::BadSize {
            got: 5,
            expected: 4
        })
    );

    let mut field = request(&ReadFaultsRequest {
        object: ObjectId(1),
        max: FaultBatch::PAGE,
    });
    field[HEADER_LEN + 4] = 0;
    let (_, o) = raw(&mut server, &field);
    assert_eq!(
        o,
        Outcome::Protocol(ProtocolError::BadField {
            offset: 4,
            value: 0
        })
    );

    let (h, o) = raw(&mut server, &[1, 2, 3]);
    assert_eq!((h.op, h.request_id), (0, 0));
    assert!(matches!(
        o,
        Outcome::Protocol(ProtocolError::BadSize { got: 3, .. })
    ));

    let mut reply_flag = good.clone();
    reply_flag[3] = FLAG_REPLY;
    let (_, o) = raw(&mut server, &reply_flag);
    assert_eq!(
        o,
        Outcome::Protocol(ProtocolError::BadHeader {
            offset: 3,
            value: 1
        })
    );

    assert!(server.calls.is_empty());
    assert_eq!(server.protocol_errors.len(), 6);
}

/// A client of a future version: the manager says which version it speaks.
struct Future<'a>(&'a mut Recorder);

impl Transport for Future<'_> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        let mut msg = request.to_vec();
        msg[2] = VERSION + 1;
        let mut out = [0u8; MAX_MESSAGE];
        let n = dispatch(self.0, ClientId(1), &msg, &mut out);
        reply[..n].copy_from_slice(&out[..n]);
        Ok(n)
    }
}

#[test]
fn a_version_mismatch_is_reported_with_both_versions() {
    let mut server = Recorder::default();
    let Err(e) = Client::connect(Future(&mut server)) else {
        panic!("connected across versions");
    };
    assert_eq!(
        e,
        CallError::Protocol(ProtocolError::BadVersion {
            got: VERSION + 1,
            supported: VERSION
        })
    );
    assert_eq!(
        e.to_string(),
        "the manager rejected the message: protocol version 4 where version 3 is spoken"
    );
    assert!(server.calls.is_empty());
}

#[test]
fn the_client_refuses_replies_it_cannot_trust() {
    type Case = (fn(&mut Vec<u8>), fn(&CallError) -> bool);
    let cases: [Case; 5] = [
        (
            |b| b[12] ^= 1,
            |e| matches!(e, CallError::BadReply(ReplyError::WrongId { .. })),
        ),
        (
            |b| b[4] = 1,
            |e| matches!(e, CallError::BadReply(ReplyError::WrongOp { .. })),
        ),
        (
            |b| b[3] = 0,
            |e| matches!(e, CallError::BadReply(ReplyError::Malformed(_))),
        ),
        (
            |b| b.truncate(19),
            |e| matches!(e, CallError::BadReply(ReplyError::Malformed(_))),
        ),
        (
            |b| {
                b[6] = 0x63;
                b[7] = 0x02;
            },
            |e| matches!(e, CallError::BadReply(ReplyError::BadStatus(0x0263))),
        ),
    ];
    for (i, (tamper, expect)) in cases.into_iter().enumerate() {
        let mut server = Recorder::default();
        let mut c = Client {
            transport: Bytes {
                server: &mut server,
                client: ClientId(1),
                tamper,
            },
            id: ClientId(1),
            next_request: 1,
            buffers: crate::client::Buffers::new(),
        };
        let e = c.create_object(ObjectFlags::empty()).unwrap_err();
        assert!(expect(&e), "case {i}: {e:?}");
    }
}

#[test]
fn the_op_table_is_consistent() {
    let mut numbers = BTreeSet::new();
    let mut names = BTreeSet::new();
    assert_eq!(OPS.len(), Op::ALL.len());
    for (info, op) in OPS.iter().zip(Op::ALL) {
        assert_eq!(info.op, *op);
        assert_eq!(op.info(), info);
        assert_eq!(Op::from_u16(op.number()), Some(*op));
        assert!(
            numbers.insert(op.number()),
            "duplicate op number {}",
            op.number()
        );
        assert!(names.insert(info.name), "duplicate op name {}", info.name);
        let req: usize = info.request.iter().map(|f| f.size).sum();
        let rep: usize = info.reply.iter().map(|f| f.size).sum();
        assert_eq!(
            (req, rep),
            (info.request_size, info.reply_size),
            "{}",
            info.name
        );
        assert!(info.request_size <= MAX_PAYLOAD && info.reply_size <= MAX_PAYLOAD);
    }
    assert_eq!(Op::from_u16(0), None);
    // A full fault page fits one message.
    const { assert!(ReadFaultsReply::SIZE <= MAX_PAYLOAD) };
}

/// The "Operations" section of `docs/protocol.md` as the op table declares it.
fn generated_operations() -> String {
    let mut s = String::new();
    crate::declare::write_operations(&mut s).unwrap();
    s
}

#[test]
fn protocol_md_is_generated_from_the_declaration() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("docs/protocol.md is readable");
    let fresh: String = crate::declare::replace_generated(&doc, &generated_operations())
        .expect("docs/protocol.md has the generated-section markers")
        .collect();
    assert!(
        fresh == doc,
        "docs/protocol.md is stale: run `cargo run -p smmuman-api --example protocol_layouts \
         -- --write docs/protocol.md`"
    );
    for info in OPS {
        assert!(doc.contains(&info.heading().to_string()), "{}", info.name);
    }
    for e in DomainError::ALL {
        let row = format!("| `0x02{:02x}` | {e:?} |", e.code());
        assert!(doc.contains(&row), "docs/protocol.md lacks the row {row}");
    }
}

#[test]
fn a_stale_protocol_md_is_caught() {
    // The check above can fail: an op section that lost a refusal line differs.
    let doc = format!(
        "head\n{}\n\n{}\n{}\ntail\n",
        crate::declare::GENERATED_BEGIN,
        generated_operations().replace("* `DeviceNotAssigned`", "* `Busy`"),
        crate::declare::GENERATED_END
    );
    let fresh: String = crate::declare::replace_generated(&doc, &generated_operations())
        .unwrap()
        .collect();
    assert_ne!(fresh, doc);
    // And one that is current is left as it is.
    let fresh_again: String = crate::declare::replace_generated(&fresh, &generated_operations())
        .unwrap()
        .collect();
    assert_eq!(fresh_again, fresh);
}

#[test]
fn every_op_documents_its_refusals_by_their_wire_names() {
    let names: Vec<String> = DomainError::ALL.iter().map(|e| format!("{e:?}")).collect();
    for info in OPS {
        let text: String = info.doc.concat();
        let never = text.contains("Never refused.");
        let listed = text.contains("Refusals");
        assert!(
            never != listed,
            "{}: says either \"Never refused.\" or lists its refusals",
            info.name
        );
        // Every bullet names domain errors by their wire names.
        for bullet in info
            .doc
            .iter()
            .filter(|l| l.trim_start().starts_with("* `"))
        {
            let name = bullet
                .trim_start()
                .trim_start_matches("* `")
                .split('`')
                .next()
                .unwrap();
            assert!(
                names.iter().any(|n| n == name),
                "{}: `{name}` is not a domain error",
                info.name
            );
        }
    }
    // The attach order the manager keeps (`smmuman-server`'s tests check the behaviour).
    let attach: String = Op::Attach.info().doc.concat();
    let at = |name: &str| attach.find(&format!("* `{name}`")).unwrap();
    assert!(at("NotFound") < at("DeviceNotAssigned"));
    assert!(at("DeviceNotAssigned") < at("Busy"));
    assert!(at("Busy") < at("GroupSplit"));
}

#[test]
fn a_reply_buffer_too_small_gets_nothing() {
    let mut server = Recorder::default();
    let req = request(&QueryRequest {});
    let mut small = [0u8; 64];
    assert_eq!(dispatch(&mut server, ClientId(1), &req, &mut small), 0);
    assert_eq!(small, [0u8; 64]);
    let mut big = [0u8; 2 * MAX_MESSAGE];
    let n = dispatch(&mut server, ClientId(1), &req, &mut big);
    assert_eq!(n, HEADER_LEN + QueryReply::SIZE);
    assert!(check_reply(&big[..n]).is_ok());
}

#[test]
fn statuses_in_replies_match_their_class() {
    let mut out = [0u8; MAX_MESSAGE];
    let n = message::encode_refusal(6, 1, &Refusal::new(DomainError::NotOwned, 0x4000), &mut out);
    let (h, _) = Header::parse(&out[..n]).unwrap();
    assert_eq!(
        Status::from_u16(h.status),
        Some(Status::Domain(DomainError::NotOwned))
    );
    assert_eq!(h.payload_len, 16);
}
