//! Device authority: a client attaches only the devices the host assigned it. A hostile client
//! is refused every other device with `DeviceNotAssigned`, the same answer before, while and
//! after another client holds it, and the device's DMA never reaches the hostile client's RAM.

use super::*;
use crate::authority::AssignError;
use smmuman_api::{DeviceSel, DomainError, PciMatch};

/// The victim's RAM and the hostile client's RAM.
const V_RAM: u64 = 0x8000_0000;
const H_RAM: u64 = 0x8040_0000;
/// Where both map their RAM: the same I/O addresses, so a device that moved to the hostile
/// client's object would write the hostile client's RAM at the addresses the victim's guest
/// programs.
const WINDOW: u64 = 0x10_0000;

const V: ClientId = A;
const H: ClientId = B;

fn ram(start: u64) -> Grant {
    Grant {
        range: PhysRange {
            start: PhysAddr(start),
            len: 4 * MIB,
        },
        kind: GrantKind::Ram,
    }
}

/// The host gave the victim the edu, the bridged group and the GPU, the hostile client the
/// NIC; the DSP is nobody's.
fn hosted() -> Rig {
    let mut rig = Rig::new();
    rig.m.client_gone(V);
    rig.m.client_gone(H);
    let victims = [
        sel(pci(0, 1, 0)),
        DeviceSel::Sid(BRIDGED),
        DeviceSel::Mmio(GPU_BASE),
    ];
    rig.m.assign(V, &[ram(V_RAM)], &victims).unwrap();
    rig.m
        .assign(H, &[ram(H_RAM)], &[sel(pci(0, 2, 0))])
        .unwrap();
    rig
}

/// Every way to name a device the hostile client was not given: each function, each
/// platform device, wildcards that cover them (and its own NIC), raw StreamIDs.
fn not_given() -> Vec<DeviceSel> {
    vec![
        sel(pci(0, 1, 0)),
        sel(pci(1, 0, 0)),
        sel(pci(1, 1, 0)),
        DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        DeviceSel::Pci(PciMatch::new(Some(0), None, None).unwrap()),
        DeviceSel::Pci(PciMatch::ANY),
        DeviceSel::Mmio(GPU_BASE),
        DeviceSel::Mmio(DSP_BASE),
        // The board lets clients select the GPU by raw StreamID.
        DeviceSel::Sid(GPU),
    ]
}

/// The SIDs of the devices the hostile client was not given.
const OTHERS: [StreamId; 4] = [EDU, BRIDGED, GPU, DSP];

/// The hostile client tries every selector; returns the refusals (all `DeviceNotAssigned`).
fn try_all(rig: &mut Rig, obj: smmuman_api::ObjectId) -> Vec<Refusal> {
    let before = rig.fake().counts().attaches;
    let got: Vec<Refusal> = not_given()
        .into_iter()
        .map(|d| {
            let r = refusal(rig.as_(H).attach(obj, d));
            assert_eq!(r.error, DomainError::DeviceNotAssigned, "{d}: {r}");
            r
        })
        .collect();
    assert_eq!(
        rig.fake().counts().attaches,
        before,
        "no refused attach reached the IOMMU"
    );
    got
}

/// No device the hostile client was not given reaches its RAM through its window.
fn none_reach_hostile_ram(rig: &Rig) {
    for sid in OTHERS {
        for off in [0, 0x1000, 4 * MIB - 0x1000] {
            let pa = rig.dma(sid, WINDOW + off);
            assert!(
                pa.is_none_or(|pa| !(H_RAM..H_RAM + 4 * MIB).contains(&pa)),
                "{sid} at {:#x} reached the hostile client's RAM at {pa:?}",
                WINDOW + off
            );
        }
    }
}

#[test]
fn a_hostile_client_is_refused_every_device_it_was_not_given_before_during_and_after_its_owner() {
    let mut rig = hosted();
    let h = rig.object(H);
    rig.as_(H)
        .map(h, win(WINDOW, H_RAM, 4 * MIB), RW, NONE)
        .unwrap();
    // Its own device is its to attach (the first control).
    rig.as_(H).attach(h, sel(pci(0, 2, 0))).unwrap();
    assert_eq!(rig.dma(NIC, WINDOW), Some(H_RAM));

    // 1. Before the owner attaches: every device is free, and still refused.
    let first = try_all(&mut rig, h);
    assert!(first.contains(&Refusal::new(DomainError::DeviceNotAssigned, EDU.0.into())));
    none_reach_hostile_ram(&rig);

    // 2. The owner attaches its devices and maps its RAM at the same I/O addresses.
    let v = rig.object(V);
    rig.as_(V)
        .map(v, win(WINDOW, V_RAM, 4 * MIB), RW, NONE)
        .unwrap();
    for d in [
        sel(pci(0, 1, 0)),
        DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        DeviceSel::Mmio(GPU_BASE),
    ] {
        rig.as_(V).attach(v, d).unwrap();
    }
    assert_eq!(rig.dma(EDU, WINDOW), Some(V_RAM));
    // The same refusals, value for value: nothing says the owner now holds them (no Busy).
    assert_eq!(try_all(&mut rig, h), first);
    none_reach_hostile_ram(&rig);
    assert_eq!(
        rig.dma(EDU, WINDOW),
        Some(V_RAM),
        "the owner keeps its device"
    );

    // 3. The owner releases them (the attack: attach what was just released; the
    //    victim's guest may still be programming the device).
    for d in [
        sel(pci(0, 1, 0)),
        DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        DeviceSel::Mmio(GPU_BASE),
    ] {
        rig.as_(V).detach(v, d).unwrap();
    }
    assert_eq!(try_all(&mut rig, h), first);
    none_reach_hostile_ram(&rig);
    assert_eq!(rig.dma(EDU, WINDOW), None, "released: default deny");

    // 4. The owner's object is gone too; and the owner can take its device back (no Busy).
    rig.as_(V).destroy_object(v).unwrap();
    assert_eq!(try_all(&mut rig, h), first);
    none_reach_hostile_ram(&rig);
    let v = rig.object(V);
    rig.as_(V).attach(v, sel(pci(0, 1, 0))).unwrap();
    rig.as_(V)
        .map(v, win(WINDOW, V_RAM, 4 * MIB), RW, NONE)
        .unwrap();
    assert_eq!(rig.dma(EDU, WINDOW), Some(V_RAM));

    // Control: once the host gives the edu to the same client (the victim gone, the hostile
    // client's next VMM assigned it), the same attach succeeds and the same DMA lands in its
    // RAM: the refusals above are what kept it out.
    rig.m.client_gone(V);
    rig.m.client_gone(H);
    rig.m
        .assign(H, &[ram(H_RAM)], &[sel(pci(0, 1, 0))])
        .unwrap();
    let h = rig.object(H);
    rig.as_(H)
        .map(h, win(WINDOW, H_RAM, 4 * MIB), RW, NONE)
        .unwrap();
    rig.as_(H).attach(h, sel(pci(0, 1, 0))).unwrap();
    assert_eq!(rig.dma(EDU, WINDOW), Some(H_RAM));
}

#[test]
fn a_hostile_clients_lookup_says_the_same_whether_the_owner_holds_its_device_or_not() {
    let mut rig = hosted();
    // The victim's devices, one by one and together with the hostile client's own NIC.
    let asked = [
        sel(pci(0, 1, 0)),
        DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        DeviceSel::Mmio(GPU_BASE),
        DeviceSel::Pci(PciMatch::new(Some(0), None, None).unwrap()),
    ];
    let hostile = |rig: &mut Rig| asked.map(|d| rig.looked(H, d));
    let owner = |rig: &mut Rig| asked.map(|d| rig.looked(V, d));

    // 1. Free (assigned to the victim, attached to nothing).
    let first = hostile(&mut rig);
    assert_eq!(
        first[0],
        (1, 1, 1, 0, 0, 0, EDU.0),
        "the edu: known, not its own"
    );
    assert_eq!(first[1], (2, 1, 2, 0, 0, 0, BRIDGED.0));
    // Bus 0 holds the edu (not its own) and its own NIC (free): only its own is described.
    assert_eq!(first[3], (2, 2, 1, 1, 0, 0, EDU.0));
    let owner_free = owner(&mut rig);
    assert_eq!(owner_free[0], (1, 1, 0, 1, 0, 0, EDU.0));

    // 2. Attached by its owner.
    let v = rig.object(V);
    for d in &asked[..3] {
        rig.as_(V).attach(v, *d).unwrap();
    }
    assert_eq!(
        hostile(&mut rig),
        first,
        "nothing says the owner now holds them"
    );
    // Control: the owner's own lookup does change (the hostile one could have).
    let owner_held = owner(&mut rig);
    assert_ne!(owner_held, owner_free);
    assert_eq!(owner_held[0], (1, 1, 0, 0, 1, 0, EDU.0));

    // 3. Released by its owner (detached, then its object destroyed).
    for d in &asked[..3] {
        rig.as_(V).detach(v, *d).unwrap();
    }
    assert_eq!(hostile(&mut rig), first, "nor that it let them go");
    assert_eq!(owner(&mut rig), owner_free);
    rig.as_(V).destroy_object(v).unwrap();
    assert_eq!(hostile(&mut rig), first);

    // 4. The owner gone (its assignment with it): the devices are nobody's, still not the
    //    hostile client's.
    rig.m.client_gone(V);
    assert_eq!(hostile(&mut rig), first);
}

#[test]
fn a_group_is_attachable_only_whole_and_only_by_the_client_given_all_of_it() {
    let mut rig = hosted();
    let v = rig.object(V);
    // Assigned, but the request covers part of the group: GroupSplit, as before.
    assert_eq!(
        refusal(rig.as_(V).attach(v, sel(pci(1, 0, 0)))),
        Refusal::new(DomainError::GroupSplit, BRIDGED.0.into())
    );
    let r = rig
        .as_(V)
        .attach(
            v,
            DeviceSel::Pci(PciMatch::new(Some(1), None, None).unwrap()),
        )
        .unwrap();
    assert_eq!((r.devices, r.groups), (2, 1));
    // The host cannot give half of a group: it assigns groups whole ...
    rig.m.client_gone(V);
    rig.m.client_gone(H);
    assert_eq!(
        rig.m.assign(H, &[], &[sel(pci(1, 0, 0))]),
        Err(AssignError::PartialGroup(sel(pci(1, 0, 0)), BRIDGED))
    );
    // ... which may take one selector per member (a host plan's `pass pci` lines).
    rig.m
        .assign(H, &[], &[sel(pci(1, 0, 0)), sel(pci(1, 1, 0))])
        .unwrap();
    assert_eq!(rig.m.assigned_devices(H).count(), 2);
}

#[test]
fn the_host_assigns_known_devices_to_one_client_at_a_time_all_or_nothing() {
    let mut rig = hosted();
    let c = ClientId(3);
    // Unknown device, someone else's device: refused, naming them.
    let nowhere = sel(pci(0, 9, 0));
    assert!(!rig.m.controls(nowhere));
    assert!(rig.m.controls(DeviceSel::Sid(GPU)));
    assert_eq!(
        rig.m.assign(c, &[ram(0x9000_0000)], &[nowhere]),
        Err(AssignError::UnknownDevice(nowhere))
    );
    assert_eq!(
        rig.m.assign(c, &[], &[DeviceSel::Sid(GPU)]),
        Err(AssignError::DeviceTaken(DeviceId::Mmio(GPU_BASE), V))
    );
    // All or nothing: a good device before a bad one is not kept, nor is the memory.
    assert_eq!(
        rig.m.assign(
            c,
            &[ram(0x9000_0000)],
            &[DeviceSel::Mmio(DSP_BASE), nowhere]
        ),
        Err(AssignError::UnknownDevice(nowhere))
    );
    assert_eq!(rig.m.assigned_devices(c).count(), 0);
    assert!(rig.m.assignment(c).is_empty());
    // A refused reassignment keeps the old one whole.
    let odd = Grant {
        range: PhysRange {
            start: PhysAddr(0x9000_0800),
            len: 0x1000,
        },
        kind: GrantKind::Ram,
    };
    assert_eq!(
        rig.m.assign(H, &[odd], &[DeviceSel::Mmio(DSP_BASE)]),
        Err(AssignError::Misaligned(odd))
    );
    assert_eq!(
        rig.m.assigned_devices(H).collect::<Vec<_>>(),
        [DeviceId::Pci(pci(0, 2, 0))]
    );
    // A reassignment replaces the devices (the client holds no object yet).
    rig.m
        .assign(H, &[ram(H_RAM)], &[DeviceSel::Mmio(DSP_BASE)])
        .unwrap();
    assert_eq!(
        rig.m.assigned_devices(H).collect::<Vec<_>>(),
        [DeviceId::Mmio(DSP_BASE)]
    );
    // The NIC it gave up is free for another client now.
    rig.m.assign(c, &[], &[sel(pci(0, 2, 0))]).unwrap();
    // Not while it holds objects.
    let _ = rig.object(H);
    assert_eq!(
        rig.m.assign(H, &[ram(H_RAM)], &[]),
        Err(AssignError::ClientActive(H))
    );
}
