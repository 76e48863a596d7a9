//! The admin op table, its wire format, its generated document and the stream framing.

use crate::client::{encode_request, AdminRequest};
use crate::declare::{replace_generated, write_operations};
use crate::frame::{frame_len, Deframer, Fed};
use crate::*;
use smmuman_api::wire::{decode_exact, encode, Wire, HEADER_LEN};
use smmuman_api::{
    ClientId, DomainError, FaultPage, MappingPage, ObjectId, ProtocolError, Refusal, Transport,
    TransportError, MAX_MESSAGE,
};

/// A server that answers the hello and a list of two units, and refuses start/stop.
struct Two;

impl AdminOps for Two {
    fn admin_hello(&mut self, _: AdminHelloRequest) -> Result<AdminHelloReply, Refusal> {
        Ok(AdminHelloReply {
            admin_version: ADMIN_VERSION,
            op_base: ADMIN_OP_BASE,
        })
    }
    fn list_units(&mut self, r: ListUnitsRequest) -> Result<ListUnitsReply, Refusal> {
        let mut units = UnitPage::default();
        for i in r.from..2 {
            units.push(UnitRow {
                name: Name::new(if i == 0 { "smmu0" } else { "smmu1" }).unwrap(),
                kind: UnitKind::Smmuv3,
                base: iommu_core::PhysAddr(0x0905_0000 + u64::from(i) * 0x2_0000),
                size: 0x2_0000,
            });
        }
        Ok(ListUnitsReply {
            units,
            next: 0,
            more: false,
        })
    }
    fn list_devices(&mut self, _: ListDevicesRequest) -> Result<ListDevicesReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn list_groups(&mut self, _: ListGroupsRequest) -> Result<ListGroupsReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn list_vms(&mut self, _: ListVmsRequest) -> Result<ListVmsReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn list_objects(&mut self, _: ListObjectsRequest) -> Result<ListObjectsReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn list_windows(&mut self, r: ListWindowsRequest) -> Result<ListWindowsReply, Refusal> {
        Ok(ListWindowsReply {
            windows: MappingPage::default(),
            next: r.from,
            more: false,
        })
    }
    fn peek_faults(&mut self, r: PeekFaultsRequest) -> Result<PeekFaultsReply, Refusal> {
        Ok(PeekFaultsReply {
            page: FaultPage::new(0, 0),
            next: r.after,
            missed: 0,
        })
    }
    fn memory_map(&mut self, _: MemoryMapRequest) -> Result<MemoryMapReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn list_grants(&mut self, _: ListGrantsRequest) -> Result<ListGrantsReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn usage(&mut self, _: UsageRequest) -> Result<UsageReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn start_vm(&mut self, _: StartVmRequest) -> Result<StartVmReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
    fn stop_vm(&mut self, _: StopVmRequest) -> Result<StopVmReply, Refusal> {
        Err(Refusal::new(DomainError::Unsupported, 0))
    }
}

/// The operator's channel in-process: every request goes through [`dispatch`].
struct Direct<S>(S);

impl<S: AdminOps> Transport for Direct<S> {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        Ok(dispatch(&mut self.0, request, reply))
    }
}

#[test]
fn calls_round_trip_through_the_admin_dispatcher() {
    let mut c = AdminClient::new(Direct(Two));
    assert_eq!(c.admin_hello().unwrap().admin_version, ADMIN_VERSION);
    let units = c.list_units(0).unwrap().units;
    let names: Vec<String> = units.iter().map(|u| u.name.to_string()).collect();
    assert_eq!(names, ["smmu0", "smmu1"]);
    assert_eq!(c.list_units(1).unwrap().units.len(), 1);
    let name = Name::new("vm1").unwrap();
    assert_eq!(
        c.start_vm(name),
        Err(AdminCallError::Refused(Refusal::new(
            DomainError::Unsupported,
            0
        )))
    );
    assert_eq!(c.peek_faults(ObjectId::UNCLAIMED, 7).unwrap().next, 7);
}

#[test]
fn the_admin_dispatcher_refuses_client_ops() {
    // A client's `hello` (op 1) on the operator's channel: not an admin op.
    let mut out = [0u8; MAX_MESSAGE];
    let n = smmuman_api::message::encode_request(&smmuman_api::HelloRequest {}, 9, &mut out);
    let mut reply = [0u8; MAX_MESSAGE];
    let m = dispatch(&mut Two, &out[..n], &mut reply);
    let (h, outcome) = smmuman_api::message::parse_reply(&reply[..m]).unwrap();
    assert_eq!((h.op, h.request_id), (1, 9));
    assert_eq!(
        outcome,
        smmuman_api::message::Outcome::Protocol(ProtocolError::UnknownOp { op: 1 })
    );
    // Control: the same header with an admin op number is served.
    let n = encode_request(&AdminHelloRequest {}, 9, &mut out);
    let m = dispatch(&mut Two, &out[..n], &mut reply);
    let (_, outcome) = smmuman_api::message::parse_reply(&reply[..m]).unwrap();
    assert!(matches!(outcome, smmuman_api::message::Outcome::Ok(_)));
}

#[test]
fn admin_op_numbers_are_not_client_op_numbers() {
    for op in AdminOp::ALL {
        assert!(op.number() >= ADMIN_OP_BASE, "{op:?}");
        assert_eq!(smmuman_api::Op::from_u16(op.number()), None, "{op:?}");
        assert_eq!(AdminOp::from_u16(op.number()), Some(*op));
    }
    for op in smmuman_api::Op::ALL {
        assert_eq!(AdminOp::from_u16(op.number()), None, "{op:?}");
    }
}

#[test]
fn every_message_fits_and_declares_its_size() {
    for info in ADMIN_OPS {
        assert!(info.request_size <= smmuman_api::wire::MAX_PAYLOAD);
        assert!(
            info.reply_size <= smmuman_api::wire::MAX_PAYLOAD,
            "{}",
            info.name
        );
        let sum: usize = info.reply.iter().map(|f| f.size).sum();
        assert_eq!(sum, info.reply_size, "{}", info.name);
    }
}

#[test]
fn names_are_printable_ascii_and_checked_on_the_wire() {
    assert_eq!(Name::new("vm1").unwrap().as_str(), "vm1");
    assert_eq!(
        Name::new("a name").unwrap_err(),
        types::NameError::BadByte(1)
    );
    assert_eq!(
        Name::new("seventeen-bytes!!").unwrap_err(),
        types::NameError::TooLong(17)
    );
    let mut buf = [0u8; NAME_LEN];
    encode(&Name::new("vm2").unwrap(), &mut buf);
    assert_eq!(&buf[..4], b"vm2\0");
    assert_eq!(decode_exact::<Name>(&buf).unwrap().as_str(), "vm2");
    // A byte after the padding started, and a control byte, are refused where they are.
    let mut lie = buf;
    lie[5] = b'x';
    assert_eq!(decode_exact::<Name>(&lie).unwrap_err().offset, 5);
    let mut lie = buf;
    lie[1] = b'\n';
    assert_eq!(decode_exact::<Name>(&lie).unwrap_err().offset, 1);
}

#[test]
fn rows_round_trip_and_refuse_unknown_enums() {
    let row = VmRow {
        name: Name::new("vm1").unwrap(),
        client: OptClient(Some(ClientId(3))),
        state: VmState::Running,
        objects: 1,
        devices: 1,
        assigned_bytes: 0x40_0000,
        mappings: 2,
        mapped_bytes: 0x40_0000,
        pending_faults: 0,
    };
    let mut buf = [0u8; VmRow::SIZE];
    assert_eq!(encode(&row, &mut buf), VmRow::SIZE);
    assert_eq!(decode_exact::<VmRow>(&buf), Ok(row));
    let state_at = NAME_LEN + OptClient::SIZE;
    let mut lie = buf;
    lie[state_at] = 9;
    assert_eq!(decode_exact::<VmRow>(&lie).unwrap_err().offset, state_at);
    // An absent client must be all zero.
    let mut lie = buf;
    lie[NAME_LEN] = 0;
    assert_eq!(
        decode_exact::<VmRow>(&lie).unwrap_err().offset,
        NAME_LEN + 1
    );
}

#[test]
fn the_deframer_splits_a_stream_and_refuses_a_stranger() {
    let mut out = [0u8; MAX_MESSAGE];
    let a = encode_request(&ListUnitsRequest { from: 3 }, 1, &mut out);
    let mut stream = out[..a].to_vec();
    let b = encode_request(&AdminHelloRequest {}, 2, &mut out);
    stream.extend_from_slice(&out[..b]);
    let mut d = Deframer::default();
    let mut got = Vec::new();
    for &byte in &stream {
        if let Fed::Message(n) = d.feed(byte) {
            got.push((n, d.message().to_vec()));
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, a);
    assert_eq!(got[1].0, b);
    assert_eq!(
        u16::from_le_bytes([got[0].1[4], got[0].1[5]]),
        ListUnitsRequest::OP.number()
    );
    // Not our magic: refused at the 16th byte.
    let mut d = Deframer::default();
    let fed: Vec<Fed> = b"GET / HTTP/1.1\r\n".iter().map(|&c| d.feed(c)).collect();
    assert!(matches!(
        fed.last(),
        Some(Fed::Refused(ProtocolError::BadMagic { .. }))
    ));
    // A payload_len past MAX_MESSAGE is refused before anything is read.
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&out[..HEADER_LEN]);
    head[8..10].copy_from_slice(&2000u16.to_le_bytes());
    assert!(matches!(
        frame_len(&head),
        Err(ProtocolError::BadSize { .. })
    ));
}

/// The generated sections of `docs/operator-protocol.md` as the op table declares them.
fn generated() -> String {
    let mut out = String::new();
    write_operations(&mut out).unwrap();
    out
}

#[test]
fn operator_protocol_md_is_generated_from_the_declaration() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operator-protocol.md"
    );
    let doc = std::fs::read_to_string(path).expect("docs/operator-protocol.md is readable");
    let want: String = replace_generated(&doc, &generated())
        .expect("docs/operator-protocol.md has the generated-section markers")
        .collect();
    assert!(
        doc == want,
        "docs/operator-protocol.md is stale: run `cargo run -p smmuman-admin-api --example \
         operator_protocol -- --write docs/operator-protocol.md`"
    );
    for op in AdminOp::ALL {
        assert!(doc.contains(&format!("`{}`", op.info().name)));
    }
}

#[test]
fn a_stale_operator_protocol_md_is_caught() {
    // The control of the test above: a document missing an op differs from the generated one.
    let generated = generated();
    let doc = format!(
        "x\n{}\n{}\n{}",
        declare::GENERATED_BEGIN,
        generated.replace("`stop_vm`", "`halt_vm`"),
        declare::GENERATED_END
    );
    let want: String = replace_generated(&doc, &generated).unwrap().collect();
    assert_ne!(doc, want);
}
