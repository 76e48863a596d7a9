//! What the daemon makes of the combined topology (`board_config::load`): the StreamID of each
//! enumerated PCI function ([`function_binding`]), the guest pool with the config's static
//! windows cut out ([`carve_windows`]) and then the RAM of its `[vm]` sections
//! ([`carve_vm_ram`]).

use crate::memory::ram_window::MAX_WINDOW_RANGES;
use crate::memory::{MemoryPlan, PhysRange};
use crate::pci::PciFunction;
use board_config::vm::{RamGrant, VmAssignment, VmName};
use board_config::{
    Device, LookupError, StaticWindow, StreamBinding, StreamSource, Topology, UnitId,
};
use core::fmt;
use heapless::Vec;
use iommu_core::StreamId;

/// Physical ranges, as many as a [`crate::memory::RamWindow`] covers.
pub type Ranges = Vec<PhysRange, MAX_WINDOW_RANGES>;

/// The binding that gives the enumerated function `f` its StreamID at `unit`, with that
/// StreamID; `None` when nothing puts it behind `unit`.
///
/// The rule for a function behind a bridge (whose DMA carries another requester ID, its
/// `dma_alias`): a binding that names the function itself wins, whatever its alias, because it
/// is an explicit statement about that function (typically the user's `[device pci ...]`, which
/// `override` lets correct firmware). Without one, the function's StreamID is what the topology
/// gives its DMA alias: firmware's `iommu-map` translates the requester ID the host bridge
/// sees, and behind a PCIe-to-PCI bridge that is (secondary bus, 00.0), not the function's own.
/// PCI functions are in segment 0 (the daemon drives one host bridge).
///
/// # Errors
/// [`LookupError::SeveralStreams`] when the topology gives the device more than one StreamID.
pub fn function_binding<'t>(
    topology: &'t Topology,
    unit: UnitId,
    f: &PciFunction,
) -> Result<Option<(&'t StreamBinding, StreamId)>, LookupError> {
    let own = Device::pci(f.bdf);
    let named = topology
        .streams()
        .iter()
        .any(|b| b.source == StreamSource::Device(own));
    let device = if named { own } else { Device::pci(f.dma_alias) };
    let mut found = topology.bindings_for(device);
    let first = found.next();
    let more = found.count();
    if more > 0 {
        return Err(LookupError::SeveralStreams {
            device,
            count: more + 1,
        });
    }
    Ok(first.filter(|(b, _)| b.unit == unit))
}

/// A static window the guest pool cannot give.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WindowProblem {
    /// The window maps memory that is not free guest memory (the daemon's own memory, the
    /// device tree, the initrd, firmware's, or no RAM at all): a device must never reach it.
    NotGrantable(StaticWindow),
    /// Cutting the window out leaves the guest pool (or the windows' RAM) in more pieces than a
    /// RAM window covers.
    TooFragmented(StaticWindow),
}

impl fmt::Display for WindowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGrantable(w) => write!(
                f,
                "window of {} ({}): pa {}+{:#x} is not free guest memory (the pool devices may be granted); the daemon's image, pools, device tree and initrd can never be mapped",
                w.device, w.origin, w.pa, w.len
            ),
            Self::TooFragmented(w) => write!(
                f,
                "window of {} ({}): pa {}+{:#x} cuts the guest pool into more than {MAX_WINDOW_RANGES} pieces",
                w.device, w.origin, w.pa, w.len
            ),
        }
    }
}

/// The guest pool of `plan` with the RAM of `windows` cut out, and that RAM (windows that
/// overlap or touch merged, sorted): the windows' memory belongs to their devices from
/// start-up and is never allocated to anything else.
///
/// # Errors
/// [`WindowProblem::NotGrantable`] for a window that is not entirely free guest memory,
/// [`WindowProblem::TooFragmented`] when the pieces do not fit in [`Ranges`].
pub fn carve_windows(
    plan: &MemoryPlan,
    windows: &[StaticWindow],
) -> Result<(Ranges, Ranges), WindowProblem> {
    let mut guest: Ranges = plan.guest_pool().iter().copied().collect();
    let mut taken = Ranges::new();
    for w in windows {
        let range = PhysRange::new(w.pa, w.len)
            .filter(|_| plan.is_guest_memory(w.pa, w.len))
            .ok_or(WindowProblem::NotGrantable(*w))?;
        let mut merged = range;
        let mut i = 0;
        while i < taken.len() {
            let t = taken[i];
            if t.overlaps(merged) || t.end() == merged.start() || merged.end() == t.start() {
                let start = t.start().min(merged.start());
                let end = t.end().max(merged.end());
                merged = PhysRange::from_bounds(start, end).unwrap_or(merged);
                taken.swap_remove(i);
            } else {
                i += 1;
            }
        }
        taken
            .push(merged)
            .map_err(|_| WindowProblem::TooFragmented(*w))?;
        guest = cut(&guest, range).ok_or(WindowProblem::TooFragmented(*w))?;
    }
    taken.sort_unstable();
    Ok((guest, taken))
}

/// `ranges` without `range`; `None` when the pieces do not fit in [`Ranges`].
fn cut(ranges: &Ranges, range: PhysRange) -> Option<Ranges> {
    let mut rest = Ranges::new();
    for g in ranges {
        let before = PhysRange::from_bounds(g.start(), range.start().min(g.end()));
        let after = PhysRange::from_bounds(range.end().max(g.start()), g.end());
        for piece in [before, after].into_iter().flatten() {
            rest.push(piece).ok()?;
        }
    }
    Some(rest)
}

/// A VM's RAM the guest pool cannot give.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmRamProblem {
    /// The VM.
    pub vm: VmName,
    /// Its `ram` statement.
    pub grant: RamGrant,
    /// What is wrong.
    pub kind: VmRamProblemKind,
}

/// What is wrong with a VM's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmRamProblemKind {
    /// Not free guest memory: the daemon's image, pools, device tree, initrd, firmware's
    /// reservations, a static window's RAM, another VM's RAM not shared, or no RAM at all.
    NotGrantable,
    /// Cutting it out leaves the guest pool in more pieces than a RAM window covers.
    TooFragmented,
}

impl fmt::Display for VmRamProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.grant;
        write!(
            f,
            "line {}: vm {}: ram {}+{:#x} ",
            g.line, self.vm, g.start, g.len
        )?;
        match self.kind {
            VmRamProblemKind::NotGrantable => f.write_str(
                "is not free guest memory (the pool devices may be granted); the daemon's \
                 image, pools, device tree and initrd, and static windows' RAM, are never a VM's",
            ),
            VmRamProblemKind::TooFragmented => write!(
                f,
                "cuts the guest pool into more than {MAX_WINDOW_RANGES} pieces"
            ),
        }
    }
}

/// The guest pool `guest` with the RAM of every `[vm]` section cut out, and that RAM (merged,
/// sorted). A VM's RAM must be free guest memory; a range two VMs share (both say `shared`:
/// the config parser checked) is cut once.
///
/// # Errors
/// [`VmRamProblem`] naming the VM and its `ram` line.
pub fn carve_vm_ram(
    guest: &Ranges,
    vms: &[VmAssignment],
) -> Result<(Ranges, Ranges), VmRamProblem> {
    let mut free = guest.clone();
    let mut taken = Ranges::new();
    for vm in vms {
        for g in &vm.ram {
            let problem = |kind| VmRamProblem {
                vm: vm.name.clone(),
                grant: *g,
                kind,
            };
            let Some(range) = PhysRange::new(g.start, g.len) else {
                return Err(problem(VmRamProblemKind::NotGrantable));
            };
            let in_free = free.iter().any(|r| r.contains(range));
            let already = g.shared && taken.iter().any(|r| r.contains(range));
            if already {
                continue;
            }
            if !in_free {
                return Err(problem(VmRamProblemKind::NotGrantable));
            }
            free = cut(&free, range).ok_or(problem(VmRamProblemKind::TooFragmented))?;
            taken
                .push(range)
                .map_err(|_| problem(VmRamProblemKind::TooFragmented))?;
        }
    }
    taken.sort_unstable();
    Ok((free, taken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::fdt_builder::virt;
    use crate::memory::{Reserved, ReservedKind};
    use crate::pci::FunctionKind;
    use board_config::{config, dt, Origin};
    use iommu_core::{Access, Bdf, Iova, PhysAddr};

    const MIB: u64 = 1 << 20;

    fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf::new(bus, dev, func).unwrap()
    }

    fn function(at: Bdf, alias: Bdf) -> PciFunction {
        PciFunction {
            bdf: at,
            vendor_id: 0x1234,
            device_id: 0x11e8,
            class: 0xff00,
            revision: 0,
            kind: FunctionKind::Endpoint,
            bars: [None; 6],
            upstream: None,
            dma_alias: alias,
            sid: None,
        }
    }

    /// QEMU virt's device tree (`iommu-map = <0 &smmu 0 0x10000>`) combined with `conf`.
    fn topology(conf: &str) -> (Topology, UnitId) {
        let blob = virt().build(&[]);
        let fdt = fdt::Fdt::new(&blob).unwrap();
        let firmware = dt::from_fdt(&fdt).unwrap();
        let user = config::parse("c", conf).unwrap();
        let t = board_config::combine(&firmware, Some(&user)).unwrap();
        let unit = t.unit_by_base(PhysAddr(0x905_0000)).unwrap();
        (t, unit)
    }

    fn sid_and_origin(t: &Topology, unit: UnitId, f: &PciFunction) -> Option<(u32, Origin)> {
        function_binding(t, unit, f)
            .unwrap()
            .map(|(b, sid)| (sid.0, b.origin))
    }

    #[test]
    fn a_function_on_the_root_bus_gets_the_iommu_map_of_its_own_requester_id() {
        let (t, unit) = topology("mode override\n");
        let f = function(bdf(0, 1, 0), bdf(0, 1, 0));
        assert_eq!(
            sid_and_origin(&t, unit, &f),
            Some((0x8, Origin::DeviceTree))
        );
    }

    #[test]
    fn behind_a_pcie_to_pci_bridge_firmware_is_read_at_the_dma_alias() {
        // The edu at 01:01.0 DMAs as 01:00.0: StreamID 0x100, not its own 0x108.
        let (t, unit) = topology("mode override\n");
        let f = function(bdf(1, 1, 0), bdf(1, 0, 0));
        assert_eq!(
            sid_and_origin(&t, unit, &f),
            Some((0x100, Origin::DeviceTree))
        );
    }

    #[test]
    fn a_binding_that_names_the_function_wins_over_its_alias() {
        let (t, unit) = topology(
            "[smmu smmu0]\nbase 0x0905_0000\n[device pci 01:01.0]\nunit smmu0\nsid 0x120\n",
        );
        let named = function(bdf(1, 1, 0), bdf(1, 0, 0));
        assert_eq!(
            sid_and_origin(&t, unit, &named),
            Some((0x120, Origin::Config { line: 5 }))
        );
        // Its neighbour behind the same bridge still follows the alias.
        let other = function(bdf(1, 2, 0), bdf(1, 0, 0));
        assert_eq!(
            sid_and_origin(&t, unit, &other),
            Some((0x100, Origin::DeviceTree))
        );
    }

    #[test]
    fn another_unit_is_not_ours() {
        let (t, _) = topology("mode override\n");
        let f = function(bdf(0, 1, 0), bdf(0, 1, 0));
        assert_eq!(
            function_binding(&t, UnitId(7), &f).unwrap().map(|x| x.1),
            None
        );
    }

    fn plan() -> MemoryPlan {
        let ram = PhysRange::new(PhysAddr(0x4000_0000), 512 * MIB).unwrap();
        let image = Reserved {
            range: PhysRange::new(PhysAddr(0x4008_0000), MIB).unwrap(),
            kind: ReservedKind::Image,
        };
        MemoryPlan::new(ram, &[image]).unwrap()
    }

    fn window(pa: u64, len: u64) -> StaticWindow {
        StaticWindow {
            device: Device::pci(bdf(0, 2, 0)),
            iova: Iova(0),
            pa: PhysAddr(pa),
            len,
            access: Access::RW,
            origin: Origin::Config { line: 9 },
        }
    }

    fn r(start: u64, size: u64) -> PhysRange {
        PhysRange::new(PhysAddr(start), size).unwrap()
    }

    #[test]
    fn a_window_is_cut_out_of_the_guest_pool() {
        let (guest, taken) = carve_windows(&plan(), &[window(0x5000_0000, 2 * MIB)]).unwrap();
        assert_eq!(&taken[..], [r(0x5000_0000, 2 * MIB)]);
        assert_eq!(&guest[..], [r(0x5020_0000, 256 * MIB - 2 * MIB)]);
    }

    #[test]
    fn overlapping_and_touching_windows_are_merged_and_the_pool_is_cut_around_them() {
        let windows = [
            window(0x5800_0000, 2 * MIB),
            window(0x5810_0000, 2 * MIB),
            window(0x5830_0000, MIB),
        ];
        let (guest, taken) = carve_windows(&plan(), &windows).unwrap();
        assert_eq!(&taken[..], [r(0x5800_0000, 4 * MIB)]);
        assert_eq!(
            &guest[..],
            [r(0x5000_0000, 128 * MIB), r(0x5840_0000, 124 * MIB)]
        );
    }

    #[test]
    fn a_window_over_the_daemons_memory_or_outside_ram_is_refused() {
        for w in [
            window(0x4008_0000, 64 * 1024), // the image
            window(0x4800_0000, 2 * MIB),   // the daemon pool
            window(0x5ff0_0000, 2 * MIB),   // runs past the end of RAM
            window(0x0900_0000, 4096),      // the UART
        ] {
            assert_eq!(
                carve_windows(&plan(), &[w]),
                Err(WindowProblem::NotGrantable(w)),
                "{w:?}"
            );
        }
        let e = WindowProblem::NotGrantable(window(0x4008_0000, 64 * 1024)).to_string();
        assert!(e.contains("config line 9"), "{e}");
    }

    #[test]
    fn too_many_pieces_are_an_error_not_a_truncation() {
        let windows: std::vec::Vec<StaticWindow> = (0..MAX_WINDOW_RANGES as u64)
            .map(|i| window(0x5000_0000 + (2 * i + 1) * 4 * MIB, 4096))
            .collect();
        let last = windows[windows.len() - 1];
        assert_eq!(
            carve_windows(&plan(), &windows),
            Err(WindowProblem::TooFragmented(last))
        );
    }

    fn vms(conf: &str) -> std::vec::Vec<VmAssignment> {
        let (t, _) = topology(conf);
        t.vms().to_vec()
    }

    #[test]
    fn vm_ram_is_cut_out_of_the_guest_pool_and_shared_ram_once() {
        let guest: Ranges = plan().guest_pool().iter().copied().collect();
        let vms = vms("[vm a]\nram 0x5000_0000 4M\nram 0x5100_0000 1M shared\n\
             [vm b]\nram 0x5040_0000 4M\nram 0x5100_0000 1M shared\n");
        let (rest, taken) = carve_vm_ram(&guest, &vms).unwrap();
        assert_eq!(
            taken.as_slice(),
            [
                r(0x5000_0000, 4 * MIB),
                r(0x5040_0000, 4 * MIB),
                r(0x5100_0000, MIB)
            ]
        );
        for t in &taken {
            assert!(rest.iter().all(|g| !g.overlaps(*t)), "{t:?} still free");
        }
        let free: u64 = rest.iter().map(|g| g.size()).sum();
        let pool: u64 = guest.iter().map(|g| g.size()).sum();
        assert_eq!(free, pool - 9 * MIB);
    }

    #[test]
    fn vm_ram_outside_the_guest_pool_is_refused_with_its_line() {
        let guest: Ranges = plan().guest_pool().iter().copied().collect();
        // The daemon's half of RAM (the image is there), then RAM past the end of RAM.
        for (conf, start) in [
            ("[vm a]\nram 0x4000_0000 4M\n", 0x4000_0000),
            ("[vm a]\nram 0x6000_0000 4M\n", 0x6000_0000),
        ] {
            let e = carve_vm_ram(&guest, &vms(conf)).unwrap_err();
            assert_eq!(e.kind, VmRamProblemKind::NotGrantable);
            assert_eq!((e.grant.start.0, e.grant.line), (start, 2));
            assert!(
                e.to_string().starts_with(&format!(
                    "line 2: vm a: ram {:#018x}+0x400000 is not free",
                    start
                )),
                "{e}"
            );
        }
        // Control: the same VM inside the pool is taken.
        assert!(carve_vm_ram(&guest, &vms("[vm a]\nram 0x5000_0000 4M\n")).is_ok());
    }

    #[test]
    fn vm_ram_over_a_static_window_is_refused() {
        let (guest, _) = carve_windows(&plan(), &[window(0x5000_0000, 2 * MIB)]).unwrap();
        let e = carve_vm_ram(&guest, &vms("[vm a]\nram 0x5010_0000 1M\n")).unwrap_err();
        assert_eq!(e.kind, VmRamProblemKind::NotGrantable);
    }
}
