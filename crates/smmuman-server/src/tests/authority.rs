//! Memory authority: a client maps only host memory the host assigned it; a hostile client is
//! refused everything else, and the refusal changes nothing.

use super::*;
use crate::authority::{AssignError, GRANTS_PER_CLIENT};
use smmuman_api::{DeviceSel, DomainError, MapFlags, ObjectFlags};

/// vm-a's RAM, vm-b's RAM, the RAM they share, a BAR vm-a may reach peer to peer.
const A_RAM: u64 = 0x8000_0000;
const B_RAM: u64 = 0x8040_0000;
const SHARED: u64 = 0x9000_0000;
const PEER_BAR: u64 = 0x1000_0000;
/// The SMMU's register frame on `virt`: device registers nobody may grant.
const SMMU_FRAME: u64 = 0x0905_0000;

fn grant(start: u64, len: u64, kind: GrantKind) -> Grant {
    Grant {
        range: PhysRange {
            start: PhysAddr(start),
            len,
        },
        kind,
    }
}

/// A manager where the host gave A and B each 4 MiB of RAM of their own and 1 MiB shared, and
/// A one peer BAR.
fn hosted() -> Rig {
    let mut rig = Rig::new();
    rig.m.client_gone(A);
    rig.m.client_gone(B);
    rig.m
        .assign(
            A,
            &[
                grant(A_RAM, 4 * MIB, GrantKind::Ram),
                grant(SHARED, MIB, GrantKind::SharedRam),
                grant(PEER_BAR, 0x1000, GrantKind::Peer),
            ],
            devices_of(A),
        )
        .unwrap();
    rig.m
        .assign(
            B,
            &[
                grant(B_RAM, 4 * MIB, GrantKind::Ram),
                grant(SHARED, MIB, GrantKind::SharedRam),
            ],
            devices_of(B),
        )
        .unwrap();
    rig
}

#[test]
fn a_hostile_client_is_refused_every_host_range_outside_its_assignment() {
    let mut rig = hosted();
    let oa = rig.object(A);
    let ob = rig.object(B);
    rig.as_(A).attach(oa, DeviceSel::pci(pci(0, 1, 0))).unwrap();
    let before = rig.fake().counts();
    let refused = |rig: &mut Rig, pa: u64, len: u64| {
        refusal(rig.as_(A).map(oa, win(0x10_0000, pa, len), RW, NONE))
    };
    // Device registers: the SMMU's own frame (the attack that switched translation off).
    assert_eq!(
        refused(&mut rig, SMMU_FRAME, 0x1000),
        Refusal::new(DomainError::NotAssigned, SMMU_FRAME)
    );
    // B's RAM before B mapped it ("first claimer wins" is gone)...
    assert_eq!(
        refused(&mut rig, B_RAM, 0x1000),
        Refusal::new(DomainError::NotAssigned, B_RAM)
    );
    // ... and after.
    rig.as_(B).map(ob, win(0, B_RAM, 0x1000), RW, NONE).unwrap();
    assert_eq!(
        refused(&mut rig, B_RAM, 0x1000),
        Refusal::new(DomainError::NotAssigned, B_RAM)
    );
    // Running past the end of its own RAM: the refusal names the first byte outside.
    assert_eq!(
        refused(&mut rig, A_RAM + 4 * MIB - 0x1000, 0x2000),
        Refusal::new(DomainError::NotAssigned, A_RAM + 4 * MIB)
    );
    // RAM nobody assigned, and the manager's own memory (refused as before, NotOwned first).
    assert_eq!(
        refused(&mut rig, 0xa000_0000, 0x1000).error,
        DomainError::NotAssigned
    );
    assert_eq!(
        refused(&mut rig, RESERVED.start.0, 0x1000).error,
        DomainError::NotOwned
    );
    // Shared RAM must be mapped SHARED.
    assert_eq!(
        refused(&mut rig, SHARED, 0x1000),
        Refusal::new(DomainError::NeedsShared, SHARED)
    );
    // Nothing the refusals touched reached the IOMMU: one map call (B's page).
    let after = rig.fake().counts();
    assert_eq!(after.maps, before.maps + 1);
    assert_eq!(rig.dma(EDU, 0x10_0000), None);

    // The controls: what the host assigned is granted, and the DMA lands there.
    let mut a = rig.as_(A);
    a.map(oa, win(0x10_0000, A_RAM, 4 * MIB), RW, NONE).unwrap();
    a.map(oa, win(0x100_0000, PEER_BAR, 0x1000), RW, NONE)
        .unwrap();
    a.map(oa, win(0x200_0000, SHARED, MIB), RW, MapFlags::SHARED)
        .unwrap();
    assert_eq!(rig.dma(EDU, 0x10_0000), Some(A_RAM));
    assert_eq!(rig.dma(EDU, 0x100_0000), Some(PEER_BAR));
    assert_eq!(rig.dma(EDU, 0x200_0000), Some(SHARED));
    // B maps the shared range too (both shared: not Busy).
    rig.as_(B)
        .map(ob, win(0x200_0000, SHARED, MIB), RW, MapFlags::SHARED)
        .unwrap();
}

#[test]
fn the_authority_holds_for_unity_objects_too() {
    let mut rig = hosted();
    let o = rig.as_(A).create_object(ObjectFlags::UNITY).unwrap().object;
    assert_eq!(
        refusal(rig.as_(A).map(o, win(B_RAM, B_RAM, 0x1000), RW, NONE)),
        Refusal::new(DomainError::NotAssigned, B_RAM)
    );
    rig.as_(A)
        .map(o, win(A_RAM, A_RAM, 0x1000), RW, NONE)
        .unwrap();
}

#[test]
fn a_client_the_host_assigned_nothing_can_map_nothing() {
    let mut rig = Rig::new();
    let c = ClientId(3);
    let o = rig.object(c);
    assert_eq!(
        refusal(rig.as_(c).map(o, win(0, A_RAM, 0x1000), RW, NONE)),
        Refusal::new(DomainError::NotAssigned, A_RAM)
    );
    // Control: the same request from a client with an assignment is granted.
    let oa = rig.object(A);
    rig.as_(A).map(oa, win(0, A_RAM, 0x1000), RW, NONE).unwrap();
}

#[test]
fn an_assignment_goes_with_its_client_and_cannot_change_under_its_objects() {
    let mut rig = hosted();
    let o = rig.object(A);
    assert_eq!(
        rig.m.assign(A, &[grant(A_RAM, MIB, GrantKind::Ram)], &[]),
        Err(AssignError::ClientActive(A))
    );
    rig.as_(A).map(o, win(0, A_RAM, 0x1000), RW, NONE).unwrap();
    rig.m.client_gone(A);
    assert!(rig.m.assignment(A).is_empty());
    // The next client on the same channel has nothing until the host assigns it.
    let o = rig.object(A);
    assert_eq!(
        refusal(rig.as_(A).map(o, win(0, A_RAM, 0x1000), RW, NONE)).error,
        DomainError::NotAssigned
    );
}

#[test]
fn the_host_cannot_assign_the_managers_memory_or_malformed_grants() {
    let mut rig = Rig::new();
    let c = ClientId(5);
    let mine = grant(
        RESERVED.start.0 + RESERVED.len - 0x1000,
        0x2000,
        GrantKind::Ram,
    );
    assert_eq!(
        rig.m.assign(c, &[mine], &[]),
        Err(AssignError::ManagerMemory(mine))
    );
    let odd = grant(A_RAM + 0x10, 0x1000, GrantKind::Ram);
    assert_eq!(
        rig.m.assign(c, &[odd], &[]),
        Err(AssignError::Misaligned(odd))
    );
    let many = [grant(A_RAM, 0x1000, GrantKind::Ram); GRANTS_PER_CLIENT + 1];
    assert!(rig.m.assign(c, &many, &[]).is_err());
    assert!(rig.m.assignment(c).is_empty(), "nothing kept");
}
