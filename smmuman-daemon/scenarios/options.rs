//! The options the test image hands the library (the product image uses the defaults).

use smmuman_daemon::bringup::iommu::IommuOptions;
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::host::{HostOptions, LifeControls};
use smmuman_daemon::hyp::world_switch::SliceAccounting;
use smmuman_daemon::runtime::console;

/// The SMMU's options. The test image takes `evtq-log2=<n>` on the command line: an event
/// queue of 2^n records, which a refused 4 KiB DMA (1,024 records on QEMU) overflows, so the
/// records the SMMU lost reach the VMs' `possibly_lost` (`tests-qemu/tests/host.rs`).
pub fn iommu_options(p: &Platform) -> IommuOptions {
    match p.args.get("evtq-log2").and_then(|v| v.parse::<u8>().ok()) {
        Some(evtq_log2) => {
            console::line(format_args!("IOMMU_OPTIONS evtq_log2={evtq_log2}"));
            IommuOptions { evtq_log2 }
        }
        None => IommuOptions::default(),
    }
}

/// The host's options in the test image: `accounting` (a control may ask for the old one),
/// the life cycle's controls (`life`), and the SMMU's options from the command line
/// ([`iommu_options`]).
pub fn host_options(p: &Platform, accounting: SliceAccounting, life: LifeControls) -> HostOptions {
    HostOptions {
        accounting,
        iommu: iommu_options(p),
        life,
        each_pass: None,
    }
}
