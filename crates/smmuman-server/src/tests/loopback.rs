//! Clients and a server thread that share nothing: requests, replies and notifications cross
//! std channels as bytes (the api's loopback transport), exactly as they will cross the
//! daemon's mailbox. The test plays the hardware through a shared handle on the fake IOMMU.

use super::*;
use crate::fake::SharedFake;
use crate::{serve, Clock, Endpoint, Notification, Received};
use core::time::Duration;
use iommu_core::{Direction, Fault, FaultReason};
use smmuman_api::loopback::{self, ChannelTransport, PortEvent, ServerPort};
use smmuman_api::{
    Decision, DeviceSel, DomainError, FaultBatch, Known, MapFlags, ObjectFlags, ObjectId,
    PassThrough, Refusal, VmDescription, VmmDmaPolicy,
};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// The server's end of the loopback, as the manager's transport.
struct Port(ServerPort);

impl Endpoint for Port {
    fn receive(&mut self, buf: &mut [u8; MAX_MESSAGE]) -> Received {
        match self.0.receive(buf) {
            PortEvent::Request { client, len } => Received::Request { client, len },
            PortEvent::Gone(client) => Received::ClientGone(client),
            PortEvent::Interrupt => Received::IommuEvent,
            PortEvent::Stop => Received::Stop,
        }
    }
    fn reply(&mut self, _client: ClientId, reply: &[u8]) {
        self.0.reply(reply);
    }
    fn notify(&mut self, note: Notification) {
        self.0.notify(note.client, note.object);
    }
}

struct Monotonic(Instant);

impl Clock for Monotonic {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Starts a manager in its own thread; returns the connector, the hardware handle and the
/// thread.
fn start() -> (loopback::Connector, SharedFake, JoinHandle<()>) {
    let fake = SharedFake::default();
    let mut manager = manager_over(fake.clone());
    let (connector, port) = loopback::channel();
    let server = thread::spawn(move || {
        let mut port = Port(port);
        serve(&mut manager, &mut port, &Monotonic(Instant::now()));
    });
    (connector, fake, server)
}

fn manager_over(fake: SharedFake) -> Manager<SharedFake> {
    let devices = board();
    let mut m = Manager::new(fake, &test_config(&devices)).unwrap();
    // The loopback numbers its clients from 1.
    for c in 1..=8 {
        m.assign(
            ClientId(c),
            &super::everything_but_the_manager(),
            super::devices_of(ClientId(c)),
        )
        .unwrap();
    }
    m
}

#[test]
fn connecting_without_a_manager_says_so() {
    let (connector, port) = loopback::channel();
    drop(port);
    let err = Client::connect(connector.open()).unwrap_err();
    assert_eq!(err, CallError::Transport(TransportError::NoManager));
    assert_eq!(
        err.to_string(),
        "the smmuman manager is not running (nothing answers on its channel)"
    );
}

#[test]
fn a_vmm_programs_its_window_reads_its_faults_and_is_cleaned_up_when_it_goes() {
    let (connector, fake, server) = start();
    let mut vmm = Client::connect(connector.open()).unwrap();
    let obj = vmm.create_object(ObjectFlags::empty()).unwrap().object;
    vmm.attach(obj, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    vmm.map(
        obj,
        win(0x4000_0000, 0x8000_0000, 0x20_0000),
        Access::RW,
        MapFlags::empty(),
    )
    .unwrap();
    // The reply came back, so the IOMMU already translates.
    assert_eq!(
        fake.lock().translate(EDU, Iova(0x4000_1000)),
        Some((PhysAddr(0x8000_1000), Access::RW))
    );

    // A rogue DMA: the IOMMU records it, raises its interrupt; the manager attributes it and
    // notifies the VMM, which reads it back.
    assert_eq!(vmm.arm_notify(obj).unwrap().pending, 0);
    fake.lock().inject_fault(Fault {
        sid: EDU,
        addr: Iova(0x1000),
        dir: Some(Direction::Write),
        reason: FaultReason::Translation,
        code: 0x10,
    });
    assert!(connector.interrupt());
    let note = vmm
        .transport_mut()
        .wait_notification(Duration::from_secs(5));
    assert_eq!(note, Some(obj));
    let page = vmm.read_faults(obj, FaultBatch::PAGE).unwrap().page;
    let rec = page.records().next().copied().unwrap();
    assert_eq!((rec.seq, rec.sid, rec.addr), (1, EDU, Iova(0x1000)));
    assert_eq!(rec.dir, Some(Direction::Write));

    // Another VMM cannot touch it: the host did not give it the edu.
    let mut other = Client::connect(connector.open()).unwrap();
    let theirs = other.create_object(ObjectFlags::empty()).unwrap().object;
    assert_eq!(
        refusal(other.attach(theirs, DeviceSel::pci(pci(0, 1, 0)))).error,
        smmuman_api::DomainError::DeviceNotAssigned
    );
    assert!(other.transport_mut().try_notification().is_none());

    // The VMM exits without cleaning up: the manager does it.
    drop(vmm);
    // Messages are handled in order: once `other` has its reply, the departure was handled.
    other.stats().unwrap();
    assert_eq!(fake.lock().translate(EDU, Iova(0x4000_1000)), None);
    assert_eq!(fake.lock().domain_of(EDU), None);
    // Free, but still not `other`'s: the host says who gets it next.
    assert_eq!(
        refusal(other.attach(theirs, DeviceSel::pci(pci(0, 1, 0)))).error,
        smmuman_api::DomainError::DeviceNotAssigned
    );

    assert!(connector.stop());
    server.join().unwrap();
}

#[test]
fn the_vmm_policy_asks_the_running_manager() {
    let (connector, _fake, server) = start();
    let edu = PassThrough {
        name: "edu",
        device: DeviceSel::pci(pci(0, 1, 0)),
        dma: true,
    };
    let ghost = PassThrough {
        name: "ghost",
        device: DeviceSel::pci(pci(0, 7, 0)),
        dma: true,
    };
    let mut client = Client::connect(connector.open()).unwrap();
    let known = VmDescription {
        name: "vm0",
        unity_mapped: false,
        devices: &[edu],
    };
    assert_eq!(
        VmmDmaPolicy::assess(&known, Some(&mut client)),
        Decision::Start
    );
    let unknown = VmDescription {
        devices: &[edu, ghost],
        ..known
    };
    let d = VmmDmaPolicy::assess(&unknown, Some(&mut client));
    assert!(matches!(d, Decision::Refuse { .. }), "{d}");
    assert!(d.to_string().contains("'ghost'"), "{d}");
    let unity = VmDescription {
        unity_mapped: true,
        ..unknown
    };
    let d = VmmDmaPolicy::assess(&unity, Some(&mut client));
    assert!(matches!(d, Decision::StartUnisolated { .. }), "{d}");
    assert_eq!(
        VmmDmaPolicy::decide(&known, smmuman_api::Reachability::Running, &[Known::Yes]),
        Decision::Start
    );
    // A VMM whose VM the host did not give the edu: the manager knows it (an IOMMU confines
    // it, in default deny), so the rules start the VM; its attach is what gets refused, as
    // not its own, and its lookup says so and nothing more.
    let mut stranger = Client::connect(connector.open()).unwrap();
    assert_eq!(
        VmmDmaPolicy::assess(&known, Some(&mut stranger)),
        Decision::Start
    );
    let l = stranger.lookup_device(edu.device).unwrap();
    assert_eq!((l.devices, l.not_assigned, l.free), (1, 1, 0));
    let obj = stranger.create_object(ObjectFlags::empty()).unwrap().object;
    assert_eq!(
        stranger.attach(obj, edu.device).unwrap_err(),
        CallError::Refused(Refusal::new(DomainError::DeviceNotAssigned, EDU.0.into()))
    );
    drop(stranger);

    // The manager goes away: a new VMM cannot connect, and the policy refuses its DMA VM.
    assert!(connector.stop());
    server.join().unwrap();
    drop(client);
    let no_manager: Result<Client<ChannelTransport>, _> = Client::connect(connector.open());
    assert_eq!(
        no_manager.unwrap_err(),
        CallError::Transport(TransportError::NoManager)
    );
    let d = VmmDmaPolicy::assess::<ChannelTransport>(&known, None);
    assert!(matches!(d, Decision::Refuse { .. }), "{d}");
}

#[test]
fn the_unclaimed_ledger_is_the_hosts_and_no_client_can_watch_or_drain_it() {
    let (connector, fake, server) = start();
    let mut monitor = Client::connect(connector.open()).unwrap();
    fake.lock().inject_fault(Fault {
        sid: NIC,
        addr: Iova(0xdead_0000),
        dir: Some(Direction::Read),
        reason: FaultReason::Translation,
        code: 0x10,
    });
    connector.interrupt();
    let not_yours = CallError::Refused(Refusal::new(
        DomainError::NotFound,
        ObjectId::UNCLAIMED.0.into(),
    ));
    assert_eq!(
        monitor.arm_notify(ObjectId::UNCLAIMED).unwrap_err(),
        not_yours
    );
    assert_eq!(
        monitor
            .read_faults(ObjectId::UNCLAIMED, FaultBatch::PAGE)
            .unwrap_err(),
        not_yours
    );
    assert_eq!(
        monitor.object_status(ObjectId::UNCLAIMED).unwrap_err(),
        not_yours
    );
    connector.stop();
    server.join().unwrap();
}

#[test]
fn an_oversized_request_is_answered_with_a_size_error() {
    let (connector, _fake, server) = start();
    let mut t = connector.open();
    let mut reply = [0u8; MAX_MESSAGE];
    let n = t.call(&[0u8; MAX_MESSAGE + 1], &mut reply).unwrap();
    let (_, outcome) = smmuman_api::message::check_reply(&reply[..n]).unwrap();
    assert_eq!(
        outcome,
        smmuman_api::message::Outcome::Protocol(smmuman_api::ProtocolError::BadSize {
            got: MAX_MESSAGE as u64 + 1,
            expected: MAX_MESSAGE as u64
        })
    );
    connector.stop();
    server.join().unwrap();
}

#[test]
fn the_loop_frees_an_orphan_once_the_iommu_confirms_and_not_before() {
    let (connector, fake, server) = start();
    let mut vmm = Client::connect(connector.open()).unwrap();
    let obj = vmm.create_object(ObjectFlags::empty()).unwrap().object;
    vmm.attach(obj, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    // The IOMMU will not put the edu back in deny: when its VMM goes, and on the loop's first
    // retry.
    fake.lock().fail(crate::fake::FakeOp::Detach, 0);
    fake.lock().fail(crate::fake::FakeOp::Detach, 0);
    drop(vmm);
    // Another client's round trip: the departure was served before it.
    let mut other = Client::connect(connector.open()).unwrap();
    other.query().unwrap();
    assert!(!fake.lock().failure_pending(), "both refusals were met");
    assert!(
        fake.lock().domain_of(EDU).is_some(),
        "kept by the orphan: not free until the IOMMU confirms"
    );
    // A period later the loop retries before it serves the next request.
    thread::sleep(crate::config::ORPHAN_RETRY_PERIOD + Duration::from_millis(10));
    other.query().unwrap();
    assert_eq!(fake.lock().domain_of(EDU), None, "released: back in deny");
    connector.stop();
    server.join().unwrap();
}
