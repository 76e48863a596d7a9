//! Host tests of the C entry points, called as C calls them, over an in-process manager on the
//! model IOMMU. The transport checks every message the library sends.

use super::*;
use core::ffi::c_void;
use iommu_core::{Access, Bdf, Iova, PhysAddr, StreamId};
use smmuman_api::{DmaWindow, DomainError, IovaRange, MapFlags, MAX_MESSAGE};
use smmuman_server::fake::FakeIommu;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};

const RAM: u64 = 0x8000_0000;
const RAM_LEN: u64 = 0x40_0000;

static BOARD: [DeviceEntry; 1] = [DeviceEntry {
    id: DeviceId::Pci(Bdf {
        bus: 0,
        dev: 1,
        func: 0,
    }),
    sid: StreamId(8),
    raw_sid_allowed: false,
}];
static IOVA: [IovaRange; 1] = [IovaRange {
    first: Iova(0),
    last: Iova(u64::MAX),
}];

/// What a test's transport points at: the manager, and what crossed.
struct Wire {
    manager: Manager<FakeIommu>,
    /// Requests sent (after hello).
    sent: usize,
    /// Requests the manager's own check found malformed.
    malformed: usize,
    /// When set, the transport answers with this code instead.
    fail: Option<i32>,
    /// When set, the transport claims a reply this long.
    claim: Option<usize>,
    /// When set, the transport calls `smmu_obj_create` on this client from inside the call.
    reenter: Option<smmu_client_t>,
    reentered: Option<smmu_status>,
}

unsafe extern "C" fn wire_call(
    ctx: *mut c_void,
    request: *const u8,
    request_len: usize,
    reply: *mut u8,
    reply_cap: usize,
    reply_len: *mut usize,
) -> i32 {
    // SAFETY: the test's `Wire` and the library's buffers, valid during the call.
    let (w, request, reply, reply_len) = unsafe {
        (
            &mut *ctx.cast::<Wire>(),
            core::slice::from_raw_parts(request, request_len),
            core::slice::from_raw_parts_mut(reply, reply_cap),
            &mut *reply_len,
        )
    };
    if let Some(c) = w.reenter.take() {
        let mut o = 0;
        // SAFETY: a live local.
        w.reentered = Some(unsafe { smmu_obj_create(c, 0, &mut o) });
    }
    if let Some(code) = w.fail {
        return code;
    }
    w.sent += 1;
    if smmuman_api::message::check_request(request).is_err() {
        w.malformed += 1;
    }
    let mut buf = [0u8; MAX_MESSAGE];
    let n = w
        .manager
        .handle(smmuman_api::ClientId(1), request, &mut buf);
    reply[..n].copy_from_slice(&buf[..n]);
    *reply_len = w.claim.unwrap_or(n);
    SMMU_TRANSPORT_OK
}

fn wire() -> Box<Wire> {
    let config = ManagerConfig {
        devices: &BOARD,
        reserved: &[],
        iova_ranges: &IOVA,
        page_sizes: 1 << 12,
        fault_log_depth: 32,
        max_mappings_per_object: 4096,
        max_mappings: 4096,
        clock: || core::time::Duration::ZERO,
    };
    let mut manager = Manager::new(FakeIommu::new(), &config).unwrap();
    let ram = Grant {
        range: PhysRange {
            start: PhysAddr(RAM),
            len: RAM_LEN,
        },
        kind: GrantKind::Ram,
    };
    let edu = smmuman_api::DeviceSel::pci(Bdf::new(0, 1, 0).unwrap());
    manager
        .assign(smmuman_api::ClientId(1), &[ram], &[edu])
        .unwrap();
    Box::new(Wire {
        manager,
        sent: 0,
        malformed: 0,
        fail: None,
        claim: None,
        reenter: None,
        reentered: None,
    })
}

/// A connected client over `w` (which must outlive it) and a new object.
fn connect(w: &mut Wire) -> (smmu_client_t, smmu_object_t) {
    let t = smmu_transport {
        ctx: (w as *mut Wire).cast(),
        call: Some(wire_call),
    };
    let mut c = 0;
    // SAFETY: live locals.
    assert_eq!(unsafe { smmu_connect(&t, &mut c) }, SMMU_OK);
    let mut o = 0;
    // SAFETY: a live local.
    assert_eq!(unsafe { smmu_obj_create(c, 0, &mut o) }, SMMU_OK);
    w.sent = 0;
    (c, o)
}

fn last_error(c: smmu_client_t) -> String {
    let mut buf = [0u8; 512];
    // SAFETY: a live buffer of that size.
    let n = unsafe { smmu_last_error(c, buf.as_mut_ptr().cast(), buf.len()) };
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// Whether the Rust client could build this window at all (the rules C must not get around).
fn rust_builds(e: &smmu_map_entry) -> bool {
    DmaWindow::new(Iova(e.iova), PhysAddr(e.phys), e.len).is_ok()
        && u8::try_from(e.access)
            .ok()
            .and_then(Access::from_bits)
            .is_some_and(smmuman_api::is_window_access)
        && MapFlags::from_bits(e.flags).is_some()
}

#[test]
fn c_sends_exactly_the_windows_rust_can_build_and_every_message_is_well_formed() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    let addrs = [RAM, RAM + 0x800, u64::MAX - 0xfff, 0];
    let lens = [0, 0x1000, 0x1001, 0x2000, u64::MAX];
    let (mut sent, mut refused) = (0, 0);
    for &iova in &addrs {
        for &phys in &addrs {
            for &len in &lens {
                for access in [0, 1, 2, 3, 4, 7, 8, 9, 0x10, 0x101] {
                    for flags in [0, 1, 2, 0x8000_0000] {
                        let e = smmu_map_entry {
                            iova,
                            phys,
                            len,
                            access,
                            flags,
                        };
                        let before = w.sent;
                        // SAFETY: one live entry.
                        let rc = unsafe { smmu_mapping_add(c, o, &e, 1) };
                        let went = w.sent > before;
                        assert_eq!(went, rust_builds(&e), "{e:?}: status {rc}");
                        if went {
                            sent += 1;
                        } else {
                            refused += 1;
                            assert_eq!(rc, SMMU_ERR_INVALID, "{e:?}");
                            assert!(last_error(c).contains("entries[0]"), "{e:?}");
                        }
                        if rc == SMMU_OK {
                            let r = smmu_range { iova, len };
                            // SAFETY: one live range, no out-pointer.
                            let rc =
                                unsafe { smmu_mapping_remove(c, o, &r, 1, core::ptr::null_mut()) };
                            assert_eq!(rc, SMMU_OK);
                        }
                    }
                }
            }
        }
    }
    assert!(sent > 0 && refused > 0, "sent {sent}, refused {refused}");
    assert_eq!(w.malformed, 0, "the manager found a message malformed");
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn a_window_with_the_device_attribute_is_refused_by_the_library_not_the_wire() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    let e = smmu_map_entry {
        iova: 0,
        phys: RAM,
        len: 0x1000,
        access: Access::DEVICE.bits().into(),
        flags: 0,
    };
    // SAFETY: one live entry.
    let rc = unsafe { smmu_mapping_add(c, o, &e, 1) };
    assert_eq!((rc, w.sent), (SMMU_ERR_INVALID, 0));
    assert_eq!(
        last_error(c),
        "invalid argument entries[0]: access 0x8 is not a window's access (READ, WRITE, EXEC, \
         at least one) (nothing was sent)"
    );
    // Control: the same window readable goes to the manager and lands.
    let ok = smmu_map_entry {
        access: SMMU_ACCESS_READ,
        ..e
    };
    // SAFETY: one live entry.
    assert_eq!(unsafe { smmu_mapping_add(c, o, &ok, 1) }, SMMU_OK);
    assert_eq!(w.sent, 1);
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn array_counts_and_pointers_are_checked_before_anything_is_sent() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    let e = [smmu_map_entry {
        iova: 0,
        phys: RAM,
        len: 0x1000,
        access: SMMU_ACCESS_READ,
        flags: 0,
    }; SMMU_MAP_BATCH + 1];
    // SAFETY: `e` holds SMMU_MAP_BATCH + 1 entries.
    unsafe {
        assert_eq!(smmu_mapping_add(c, o, e.as_ptr(), 0), SMMU_ERR_INVALID);
        assert_eq!(
            smmu_mapping_add(c, o, e.as_ptr(), e.len()),
            SMMU_ERR_INVALID
        );
        assert!(last_error(c).contains("33 elements where one call takes at most 32"));
        assert_eq!(smmu_mapping_add(c, o, core::ptr::null(), 1), SMMU_ERR_NULL);
        assert_eq!(
            last_error(c),
            "invalid argument entries: NULL pointer (nothing was sent)"
        );
        let r = [smmu_range {
            iova: 0,
            len: 0x1000,
        }; SMMU_UNMAP_BATCH + 1];
        let none = core::ptr::null_mut();
        assert_eq!(
            smmu_mapping_remove(c, o, r.as_ptr(), r.len(), none),
            SMMU_ERR_INVALID
        );
        let odd = smmu_range { iova: 0, len: 0x10 };
        assert_eq!(smmu_mapping_remove(c, o, &odd, 1, none), SMMU_ERR_INVALID);
        assert!(last_error(c).contains("ranges[0]: length 0x10 is not a multiple of 0x1000"));
        let mut got = 0;
        let mut f = [smmu_fault::default(); 2];
        let fp = f.as_mut_ptr();
        let ni = core::ptr::null_mut();
        assert_eq!(smmu_fault_read(c, o, fp, 0, &mut got, ni), SMMU_ERR_INVALID);
        assert_eq!(smmu_fault_read(c, o, fp, 2, none.cast(), ni), SMMU_ERR_NULL);
        assert_eq!(
            smmu_fault_read(c, o, core::ptr::null_mut(), 2, &mut got, ni),
            SMMU_ERR_NULL
        );
        assert_eq!(smmu_obj_create(c, 2, &mut 0), SMMU_ERR_INVALID);
        assert!(last_error(c).contains("flags: unknown flag bits 0x2"));
        assert_eq!(smmu_obj_create(c, 0, core::ptr::null_mut()), SMMU_ERR_NULL);
        let n = core::ptr::null_mut();
        assert_eq!(smmu_device_add_pci(c, o, 256, 1, 0, n), SMMU_ERR_INVALID);
        assert!(last_error(c).contains("bus: PCI bus 256 is above 255"));
        assert_eq!(smmu_device_add_pci(c, o, 0, 1, 8, n), SMMU_ERR_INVALID);
        assert!(last_error(c).contains("func: PCI function 8 is above 7"));
        assert_eq!(smmu_device_add_pci(c, o, 0, 300, 0, n), SMMU_ERR_INVALID);
    }
    assert_eq!(w.sent, 0, "a refused argument reached the manager");
    // Control: fault reads with a buffer larger than a page are clamped, not refused.
    let mut f = [smmu_fault::default(); 64];
    let mut got = 7;
    // SAFETY: 64 live records, live locals.
    let rc = unsafe { smmu_fault_read(c, o, f.as_mut_ptr(), 64, &mut got, core::ptr::null_mut()) };
    assert_eq!((rc, got, w.sent), (SMMU_OK, 0, 1));
    // Control: wildcards are patterns, sent as such (the edu is the client's: attached).
    let mut ch = smmu_devices::default();
    // SAFETY: a live local.
    let rc = unsafe { smmu_device_add_pci(c, o, 0, SMMU_PCI_ANY, SMMU_PCI_ANY, &mut ch) };
    assert_eq!((rc, ch.devices), (SMMU_OK, 1));
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn handles_that_are_not_connected_clients_are_refused() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    assert_eq!(smmu_disconnect(c), SMMU_OK);
    for h in [c, 0, 0xff, 0x100, u32::MAX] {
        assert_eq!(smmu_obj_destroy(h, o), SMMU_ERR_BAD_CLIENT, "{h:#x}");
        assert_eq!(smmu_disconnect(h), SMMU_ERR_BAD_CLIENT, "{h:#x}");
    }
    assert_eq!(last_error(c), "not a connected client handle");
    assert_eq!(w.sent, 0);
}

#[test]
fn a_transport_that_calls_back_into_its_own_client_gets_busy_not_a_deadlock() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    w.reenter = Some(c);
    assert_eq!(smmu_obj_destroy(c, o), SMMU_OK);
    assert_eq!(w.reentered, Some(SMMU_ERR_CLIENT_BUSY));
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn transport_failures_have_their_own_codes() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    w.claim = Some(MAX_MESSAGE + 1);
    assert_eq!(smmu_obj_destroy(c, o), SMMU_ERR_TRANSPORT);
    assert_eq!(
        last_error(c),
        format!("reply of {} bytes does not fit", MAX_MESSAGE + 1)
    );
    w.claim = None;
    w.fail = Some(SMMU_TRANSPORT_DISCONNECTED);
    assert_eq!(smmu_obj_destroy(c, o), SMMU_ERR_DISCONNECTED);
    w.fail = Some(42);
    assert_eq!(smmu_obj_destroy(c, o), SMMU_ERR_TRANSPORT);
    assert_eq!(last_error(c), "transport error 42");
    assert_eq!(smmu_disconnect(c), SMMU_OK);
    // No manager: connecting says so.
    w.fail = Some(SMMU_TRANSPORT_NO_MANAGER);
    let t = smmu_transport {
        ctx: (&mut *w as *mut Wire).cast(),
        call: Some(wire_call),
    };
    let mut h = 0;
    // SAFETY: live locals.
    assert_eq!(unsafe { smmu_connect(&t, &mut h) }, SMMU_ERR_NO_MANAGER);
    let none = smmu_transport { call: None, ..t };
    // SAFETY: live locals.
    assert_eq!(unsafe { smmu_connect(&none, &mut h) }, SMMU_ERR_NULL);
}

#[test]
fn every_refusal_has_its_code_and_text() {
    for e in DomainError::ALL {
        let code = status::refused(e);
        assert_eq!(code, 100 + i32::from(e.code()));
        let text = status::text(code).to_str().unwrap();
        assert!(text.starts_with("refused: "), "{e:?}: {text}");
    }
    assert_eq!(
        status::refused(DomainError::NotAssigned),
        SMMU_ERR_NOT_ASSIGNED
    );
    assert_eq!(
        status::refused(DomainError::DeviceNotAssigned),
        SMMU_ERR_DEVICE_NOT_ASSIGNED
    );
    assert_eq!(status::text(-7).to_str(), Ok("unknown status code"));
}

#[test]
fn messages_are_truncated_and_terminated_like_snprintf() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    // SAFETY: a NULL array with count 1 is refused.
    unsafe { smmu_mapping_add(c, o, core::ptr::null(), 1) };
    let full = last_error(c);
    let mut small = [0xffu8; 8];
    // SAFETY: a live buffer of 8 bytes.
    let n = unsafe { smmu_last_error(c, small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(n, full.len());
    assert_eq!(&small[..7], &full.as_bytes()[..7]);
    assert_eq!(small[7], 0);
    // SAFETY: NULL with any capacity writes nothing.
    let n = unsafe { smmu_last_error(c, core::ptr::null_mut(), 99) };
    assert_eq!(n, full.len());
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn the_vmm_rule_refuses_what_rust_refuses() {
    let mut w = wire();
    let (c, _) = connect(&mut w);
    let dev = |bus, dma| policy::smmu_passthrough {
        name: c"edu".as_ptr(),
        kind: SMMU_DEVICE_PCI,
        bus,
        dev: 1,
        func: 0,
        mmio_base: 0,
        dma,
    };
    let decide = |client, vm: &policy::smmu_vm| {
        let mut d = -1;
        let mut msg = [0u8; 256];
        // SAFETY: live locals and a NUL-terminated name.
        let rc = unsafe { smmu_vmm_decide(client, vm, msg.as_mut_ptr().cast(), 256, &mut d) };
        let end = msg.iter().position(|&b| b == 0).unwrap();
        (rc, d, String::from_utf8(msg[..end].to_vec()).unwrap())
    };
    let devs = [dev(0, 1)];
    let vm = policy::smmu_vm {
        name: c"a".as_ptr(),
        unity_mapped: 0,
        devices: devs.as_ptr(),
        num_devices: 1,
    };
    assert_eq!(
        decide(c, &vm),
        (SMMU_OK, SMMU_DECISION_START, "DMA isolation: ok".into())
    );
    let (rc, d, msg) = decide(
        SMMU_NO_CLIENT,
        &policy::smmu_vm {
            unity_mapped: 1,
            ..vm
        },
    );
    assert_eq!((rc, d), (SMMU_OK, SMMU_DECISION_START_UNISOLATED));
    assert!(msg.starts_with("WARNING: VM 'a' is unity-mapped"), "{msg}");
    // A device the manager does not know (bus 5): refused.
    let unknown = [dev(5, 1)];
    let (_, d, msg) = decide(
        c,
        &policy::smmu_vm {
            devices: unknown.as_ptr(),
            ..vm
        },
    );
    assert_eq!(d, SMMU_DECISION_REFUSE, "{msg}");
    // Arguments C could get wrong.
    let bad_bool = [dev(0, 2)];
    let (rc, ..) = decide(
        c,
        &policy::smmu_vm {
            devices: bad_bool.as_ptr(),
            ..vm
        },
    );
    assert_eq!(rc, SMMU_ERR_INVALID);
    assert!(last_error(c).contains("devices[0]: 2 where 0 or 1 is required"));
    let (rc, ..) = decide(
        c,
        &policy::smmu_vm {
            unity_mapped: 7,
            ..vm
        },
    );
    assert_eq!(rc, SMMU_ERR_INVALID);
    let (rc, ..) = decide(
        c,
        &policy::smmu_vm {
            num_devices: 17,
            ..vm
        },
    );
    assert_eq!(rc, SMMU_ERR_INVALID);
    let (rc, ..) = decide(
        c,
        &policy::smmu_vm {
            devices: core::ptr::null(),
            ..vm
        },
    );
    assert_eq!(rc, SMMU_ERR_NULL);
    let bad_utf8 = [0xffu8, 0];
    let (rc, ..) = decide(
        c,
        &policy::smmu_vm {
            name: bad_utf8.as_ptr().cast(),
            ..vm
        },
    );
    assert_eq!(rc, SMMU_ERR_INVALID);
    assert!(last_error(c).contains("vm.name: not a UTF-8 string"));
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}

#[test]
fn devices_attach_and_detach_by_pci_address_or_register_base() {
    let mut w = wire();
    let (c, o) = connect(&mut w);
    let mut ch = smmu_devices::default();
    // SAFETY: a live local.
    unsafe {
        // No platform device at that base on this board: the manager says so.
        assert_eq!(
            smmu_device_add_mmio(c, o, 0x0a00_0000, &mut ch),
            SMMU_ERR_NOT_FOUND
        );
        assert_eq!(
            smmu_device_remove_mmio(c, o, 0x0a00_0000, &mut ch),
            SMMU_ERR_NOT_FOUND
        );
        assert_eq!(smmu_device_add_pci(c, o, 0, 1, 0, &mut ch), SMMU_OK);
        assert_eq!((ch.devices, ch.groups), (1, 1));
        ch = smmu_devices::default();
        assert_eq!(smmu_device_remove_pci(c, o, 0, 1, 0, &mut ch), SMMU_OK);
        assert_eq!((ch.devices, ch.groups), (1, 1));
        // Detached: a second detach finds nothing attached (value: its StreamID).
        assert_eq!(
            smmu_device_remove_pci(c, o, 0, 1, 0, &mut ch),
            SMMU_ERR_NOT_FOUND
        );
    }
    assert_eq!(
        last_error(c),
        "refused: no such object or device (or it is not yours) (0x8)"
    );
    assert_eq!(w.malformed, 0);
    assert_eq!(smmu_disconnect(c), SMMU_OK);
}
