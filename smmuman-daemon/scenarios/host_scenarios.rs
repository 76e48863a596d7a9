//! Test scenarios around the product's host plan: the host runs the plan's VMs exactly as the
//! product does ([`smmuman_daemon::host::run_vms`]), then checks host memory for what a rogue guest
//! tried to write there (`host-audit`); or runs them without the world switch's PMU and debug
//! traps and per-VM timer and GIC state (`host-unswitched`, a control), or with the old
//! time-slice accounting (`host-plan control=fresh-slice`, a control).

use iommu_core::PhysAddr;
use smmuman_daemon::bringup::platform::Platform;
use smmuman_daemon::host::LifeControls;
use smmuman_daemon::hyp::world_switch::SliceAccounting;
use smmuman_daemon::memory::{GuestMemory, PhysRange, RamWindow};
use smmuman_daemon::report::Outcome;
use smmuman_daemon::runtime::console;

/// Bytes the audit reads: one rogue DMA (`tests-qemu/guests/src/rogue.rs`, 64 bytes).
const AUDIT_LEN: u64 = 64;
/// The byte the rogue guest writes everywhere ('R').
const ROGUE_BYTE: u8 = 0x52;

/// `host-audit audit=<hpa>`: the host plan's VMs, then `AUDIT hpa=<hpa> rogue_bytes=<n>`: how
/// many of the 64 bytes at host-physical `hpa` (RAM some VM was given) hold the rogue's
/// pattern. The scenario passes when the plan did (the test reads the count: 0 when the SMMU
/// contained the rogue, 64 in the control, where the rogue aims inside its own RAM). The VMs'
/// RAM is not scrubbed when they stop (`LifeControls::skip_scrub`): the scrub would erase what
/// the audit looks for, a landed write included.
pub fn host_audit(p: &mut Platform) -> Outcome {
    let Some(hpa) = p
        .args
        .get("audit")
        .and_then(|v| board_config::number::parse_number(v).ok())
    else {
        return Outcome::fail().with("reason", "audit=<host-physical address> is required");
    };
    let Some(range) = PhysRange::new(PhysAddr(hpa), AUDIT_LEN) else {
        return Outcome::fail().with("reason", "audit range wraps");
    };
    let in_a_vm = p
        .topology
        .vms()
        .iter()
        .flat_map(|vm| vm.ram.iter())
        .any(|r| PhysRange::new(r.start, r.len).is_some_and(|ram| ram.contains(range)));
    if !in_a_vm {
        return Outcome::fail().with("reason", "audit range is not in any [vm] RAM of the config");
    }
    let keep_ram = LifeControls {
        skip_scrub: true,
        ..LifeControls::PRODUCT
    };
    let outcome = match smmuman_daemon::host::run_vms(
        p,
        crate::options::host_options(p, SliceAccounting::Charged, keep_ram),
    ) {
        Ok(o) => o,
        Err(_) => return Outcome::fail().with("reason", "the host plan was refused"),
    };
    // SAFETY: the range lies in RAM the config set aside for a VM; every VM has stopped, so
    // nothing else reads or writes it now; the read goes through the identity map.
    let window = unsafe { RamWindow::identity(&[range]) };
    let Ok(mut view) = GuestMemory::new(window) else {
        return Outcome::fail().with("reason", "audit view");
    };
    view.sync_for_cpu(range.start(), AUDIT_LEN);
    let mut bytes = [0u8; AUDIT_LEN as usize];
    view.read_bytes(range.start(), &mut bytes);
    let rogue = bytes.iter().filter(|b| **b == ROGUE_BYTE).count();
    console::line(format_args!(
        "AUDIT hpa={:#x} len={AUDIT_LEN} rogue_bytes={rogue}",
        hpa
    ));
    outcome.with("rogue_bytes", rogue)
}

/// `host-unswitched`: the host plan's VMs with the world switch as it was before it trapped the
/// PMU and debug registers and switched the virtual timer and ICH_VMCR_EL2
/// ([`smmuman_daemon::hyp::world_switch::SKIP_SWITCH_CONTROL`]): the control of `tests-qemu/tests/cpu_state.rs`, which
/// must then see one VM's values in the other.
pub fn host_unswitched(p: &mut Platform) -> Outcome {
    smmuman_daemon::hyp::world_switch::SKIP_SWITCH_CONTROL
        .store(true, core::sync::atomic::Ordering::Relaxed);
    console::line(format_args!(
        "CPU_SWITCH control=skip detail=\"control run: no PMU/debug traps, virtual timer and ICH_VMCR_EL2 shared\""
    ));
    match smmuman_daemon::host::run_vms(
        p,
        crate::options::host_options(p, SliceAccounting::Charged, LifeControls::PRODUCT),
    ) {
        Ok(o) => o,
        Err(_) => Outcome::fail().with("reason", "the host plan was refused"),
    }
}

/// `host-plan`: the host plan's VMs as the product runs them; `control=fresh-slice` restores
/// the old accounting (every entry a full slice, the host's work for a VM's exits charged to
/// nobody, no bound on what a slice may make the host do), which the fairness test shows
/// lets a trap-flooding guest starve its neighbour.
///
/// The life cycle's controls: `control=skip-scrub` leaves a stopped VM's RAM as its guest left
/// it (the next guest in it reads the old bytes), `control=skip-quiesce` leaves its devices
/// as they were (a DMA the guest queued lands in the next guest's RAM)
/// (`tests-qemu/tests/lifecycle.rs`).
pub fn host_plan(p: &mut Platform) -> Outcome {
    let mut life = LifeControls::PRODUCT;
    let accounting = match p.args.get("control") {
        None => SliceAccounting::Charged,
        Some("fresh-slice") => SliceAccounting::FreshPerEntry,
        Some("skip-scrub") => {
            life.skip_scrub = true;
            SliceAccounting::Charged
        }
        Some("skip-quiesce") => {
            life.skip_quiesce = true;
            SliceAccounting::Charged
        }
        Some(_) => {
            return Outcome::fail().with(
                "reason",
                "control=fresh-slice, skip-scrub, skip-quiesce or nothing",
            )
        }
    };
    if life != LifeControls::PRODUCT {
        console::line(format_args!(
            "HOST_LIFE_CONTROL skip_scrub={} skip_quiesce={}",
            u8::from(life.skip_scrub),
            u8::from(life.skip_quiesce)
        ));
    }
    console::line(format_args!(
        "HOST_ACCOUNTING slice={}",
        match accounting {
            SliceAccounting::Charged => "charged",
            SliceAccounting::FreshPerEntry => "fresh-per-entry",
        }
    ));
    match smmuman_daemon::host::run_vms(p, crate::options::host_options(p, accounting, life)) {
        Ok(o) => o,
        Err(_) => Outcome::fail().with("reason", "the host plan was refused"),
    }
}

/// Passes of the host loop a VM runs before [`api_cycle_pass`] asks it to stop.
const API_CYCLE_RUN_PASSES: u32 = 100;

/// Where the `host-lifecycle-api` script stands: passes seen with vm1 running, starts asked.
static API_CYCLE: spin::Mutex<(u32, u32)> = spin::Mutex::new((0, 0));

/// The script `host-lifecycle-api` runs each pass, standing in for the operator: once vm1 has
/// run for a while it is stopped (`stop_vm`); once stopped (quiesced, destroyed, scrubbed) it
/// is started again (`start_vm`) once, then stopped again.
fn api_cycle_pass() {
    use smmuman_daemon::host::lifecycle::{self, VmState};
    let Some((name, state, _)) = lifecycle::vm_at(0) else {
        return;
    };
    let mut cycle = API_CYCLE.lock();
    match state {
        VmState::Running => {
            cycle.0 += 1;
            if cycle.0 == API_CYCLE_RUN_PASSES {
                let r = lifecycle::stop_vm(name);
                console::line(format_args!(
                    "API stop_vm vm={name} ok={}",
                    u8::from(r.is_ok())
                ));
            }
        }
        VmState::Stopped if cycle.1 == 0 => {
            cycle.1 += 1;
            cycle.0 = 0;
            // Refused while running: asked again once stopped, it starts.
            let r = lifecycle::start_vm(name);
            console::line(format_args!(
                "API start_vm vm={name} ok={}",
                u8::from(r.is_ok())
            ));
        }
        _ => {}
    }
}

/// `host-lifecycle-api`: the host plan, with a script in the host loop that calls the life
/// cycle's API as the operator's channel will: `stop_vm` on the first VM while it runs, then
/// `start_vm` once it is stopped, then `stop_vm` again (`tests-qemu/tests/lifecycle.rs`).
pub fn host_lifecycle_api(p: &mut Platform) -> Outcome {
    let mut options =
        crate::options::host_options(p, SliceAccounting::Charged, LifeControls::PRODUCT);
    options.each_pass = Some(api_cycle_pass);
    match smmuman_daemon::host::run_vms(p, options) {
        Ok(o) => o,
        Err(_) => Outcome::fail().with("reason", "the host plan was refused"),
    }
}
