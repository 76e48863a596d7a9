//! What the host tells the operator's admin ops besides the manager (`admin::Host`): the
//! IOMMU unit it drives, the host-physical memory map (RAM and every register block the EL2
//! map holds; the daemon's own memory comes from the manager's reserved ranges), its VMs with
//! their state, and its heap.

use crate::address_map::{AddressMap, MemKind};
use crate::board::BoardInfo;
use smmuman_admin_api::{Name, RegionKind, RegionRow, UnitKind, UnitRow};
use smmuman_api::Refusal;
use smmuman_server::admin::{Host, HostVm, StaticHost};

/// Most regions shown (the EL2 map holds fewer: `address_map::MAX_REGIONS`).
pub const MAX_REGIONS: usize = 32;
/// Most VMs shown (the host runs at most `manager_task::MAX_CLIENTS`).
pub const MAX_VMS: usize = 8;

/// The host's answers, refreshed by the host loop ([`HostView::set_vms`],
/// [`HostView::set_heap`]) before each poll of the channel.
#[derive(Clone, Debug, Default)]
pub struct HostView {
    units: heapless::Vec<UnitRow, 4>,
    regions: heapless::Vec<RegionRow, MAX_REGIONS>,
    vms: heapless::Vec<HostVm, MAX_VMS>,
    heap: Option<(u64, u64)>,
}

/// A name for the operator: `s` cut to what a [`Name`] holds.
fn name(s: &str) -> Name {
    let mut end = s.len().min(smmuman_admin_api::NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Name::new(s.get(..end).unwrap_or("")).unwrap_or_default()
}

impl HostView {
    /// The unit and memory map of `board`, whose EL2 map is `map`.
    pub fn new(board: &BoardInfo<'_>, map: &AddressMap) -> Self {
        let mut units = heapless::Vec::new();
        let _ = units.push(UnitRow {
            name: name("smmuv3"),
            kind: UnitKind::Smmuv3,
            base: board.smmu.base,
            size: board.smmu.size,
        });
        let regions = map
            .regions()
            .iter()
            .take(MAX_REGIONS)
            .map(|r| RegionRow {
                start: r.range.start(),
                len: r.range.size(),
                kind: match r.kind {
                    MemKind::Normal => RegionKind::Ram,
                    MemKind::Device => RegionKind::Mmio,
                },
                name: name(r.name),
            })
            .collect();
        Self {
            units,
            regions,
            vms: heapless::Vec::new(),
            heap: None,
        }
    }

    /// The host's VMs now (plan order).
    pub fn set_vms(&mut self, vms: &[HostVm]) {
        self.vms = vms.iter().take(MAX_VMS).copied().collect();
    }

    /// Heap bytes in use and in all.
    pub fn set_heap(&mut self, heap: Option<(u64, u64)>) {
        self.heap = heap;
    }

    fn table(&self) -> StaticHost<'_> {
        StaticHost {
            units: &self.units,
            regions: &self.regions,
            vms: &self.vms,
            heap: self.heap,
        }
    }
}

impl Host for HostView {
    fn unit(&self, index: usize) -> Option<UnitRow> {
        self.table().unit(index)
    }
    fn region(&self, index: usize) -> Option<RegionRow> {
        self.table().region(index)
    }
    fn vm(&self, index: usize) -> Option<HostVm> {
        self.table().vm(index)
    }
    fn heap(&self) -> Option<(u64, u64)> {
        self.heap
    }
    /// The host's life cycle ([`crate::host::lifecycle::start_vm`]): a stopped VM of the plan
    /// starts again at the host loop's next pass.
    fn start_vm(&mut self, name: Name) -> Result<(), Refusal> {
        crate::host::lifecycle::start_vm(name.as_str())
            .map(|_| ())
            .map_err(life_refusal)
    }
    /// The host's life cycle ([`crate::host::lifecycle::stop_vm`]): the guest stops at its
    /// VMM's next yield, then its devices are quiesced, its object destroyed, its RAM scrubbed.
    fn stop_vm(&mut self, name: Name) -> Result<(), Refusal> {
        crate::host::lifecycle::stop_vm(name.as_str())
            .map(|_| ())
            .map_err(life_refusal)
    }
}

/// A life-cycle refusal on the operator's wire: `NotFound` for a name the plan does not have,
/// `Busy` (value: the VM's state, [`crate::host::lifecycle::VmState`] as a number) for a VM in
/// the wrong state.
fn life_refusal(e: crate::host::lifecycle::LifeError) -> Refusal {
    use crate::host::lifecycle::LifeError;
    match e {
        LifeError::UnknownVm => Refusal::new(smmuman_api::DomainError::NotFound, 0),
        LifeError::NotStopped(s) | LifeError::NotRunning(s) => {
            Refusal::new(smmuman_api::DomainError::Busy, s as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_core::PhysAddr;
    use smmuman_admin_api::VmState;

    const QEMU_VIRT: &[u8] = include_bytes!("../../fixtures/qemu-virt-10.0.dtb");

    #[test]
    fn qemu_virt_shows_its_smmu_ram_and_registers() {
        let board = BoardInfo::from_blob(QEMU_VIRT).unwrap();
        let map = AddressMap::for_board(&board, &[]).unwrap();
        let host = HostView::new(&board, &map);
        let unit = host.unit(0).unwrap();
        assert_eq!(
            (unit.kind, unit.base, unit.size),
            (UnitKind::Smmuv3, PhysAddr(0x905_0000), 0x20000)
        );
        assert!(host.unit(1).is_none());
        let regions: Vec<RegionRow> = (0..).map_while(|i| host.region(i)).collect();
        let ram = regions.iter().find(|r| r.kind == RegionKind::Ram).unwrap();
        assert_eq!((ram.start, ram.len), (PhysAddr(0x4000_0000), 512 << 20));
        for want in ["uart", "smmu", "pcie-ecam", "gicd"] {
            assert!(
                regions
                    .iter()
                    .any(|r| r.kind == RegionKind::Mmio && r.name.as_str() == want),
                "{want} in {regions:?}"
            );
        }
    }

    #[test]
    fn vms_and_heap_are_what_the_host_loop_last_set() {
        let board = BoardInfo::from_blob(QEMU_VIRT).unwrap();
        let map = AddressMap::for_board(&board, &[]).unwrap();
        let mut host = HostView::new(&board, &map);
        assert!(host.vm(0).is_none());
        let vm = HostVm {
            name: Name::new("vm1").unwrap(),
            client: None,
            state: VmState::Planned,
        };
        host.set_vms(&[vm]);
        host.set_heap(Some((10, 20)));
        assert_eq!(host.vm(0), Some(vm));
        assert_eq!(host.heap(), Some((10, 20)));
        assert!(
            host.start_vm(vm.name).is_err(),
            "no run-time life cycle yet"
        );
    }

    #[test]
    fn long_names_are_cut_not_refused() {
        assert_eq!(name("a-very-long-region-name").as_str(), "a-very-long-regi");
    }
}
