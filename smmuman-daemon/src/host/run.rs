//! The host: what the product image does once the platform is up.
//!
//! 1. Reads the host plan (`host.plan` in the initrd archive, docs/host-plan.md). A plan that
//!    is wrong gets one `FATAL reason=host-plan detail="initrd:host.plan:LINE:COL: what"`
//!    record, every SMMU is left terminating all traffic, and nothing starts.
//! 2. Gives each VM what the board config's `[vm NAME]` section assigns it (its RAM: the
//!    memory authority), memory for its CPU stage-2 tables, its guest image and its
//!    pass-through functions' configuration space.
//! 3. Starts the manager unless the plan says `manager off`, and hands it each VM's grants:
//!    its RAM and its pass-through functions (the VMM may attach no other device).
//! 4. Runs one VMM (`qvm::vm::Vm`) per VM in its own task: it connects to the manager through
//!    its mailbox like any client, starts its VM and runs the guest until it stops. Before a
//!    guest runs, the host compares, page by page, where the CPU (`AT S12E1R` through the VM's
//!    stage 2) and the SMMU (the manager's tables for the VM's device) send each
//!    guest-physical address of its RAM; a guest whose two translations disagree never runs.
//! 5. When a guest stops: its VMM quiesces its devices (`QUIESCE`: bus mastering off, FLR
//!    where offered, 100 ms) and destroys its VM object; then the host scrubs its RAM
//!    (`SCRUB`: zeroed, cleaned to the point of coherency), and only then is the VM
//!    `stopped` ([`super::lifecycle`]) and its RAM may be started again: by the plan's
//!    `restart N`, or by the operator ([`super::lifecycle::start_vm`]).
//! 6. Serves the VMMs until every VM is stopped, prints one `VM ... stop` record per run and a
//!    `RESULT scenario=host-plan` record, and leaves every SMMU aborting before it exits. With
//!    the boot argument `stay=1` it stays resident instead (`HOST state=resident`): it keeps
//!    serving the manager, the SMMU's interrupts and life-cycle requests until QEMU is ended.

use super::lifecycle::{VmState, LIFECYCLE};
use super::stage2_check::{self, FirstMismatch};
use crate::bringup::iommu::IommuOptions;
use crate::bringup::platform::Platform;
use crate::clock::Clock;
use crate::exit_code;
use crate::guest_exit;
use crate::hyp::tasks::{Task, Yielder};
use crate::hyp::world_switch::{self, El2Vcpu, SliceAccounting};
use crate::initrd::{self, Archive};
use crate::mailbox::MailboxTransport;
use crate::manager_task::{self, Mgr, MAILBOXES, MAX_CLIENTS};
use crate::memory::{DaemonMemory, GuestMemory, PhysRange, RamWindow};
use crate::mmio::{Mmio, MmioRegion};
use crate::report::{write_value, Outcome};
use crate::runtime::clock::GenericTimer;
use crate::runtime::console;
use core::fmt;
use iommu_core::{Bdf, Iova, PhysAddr, StreamId};
use qvm::gpa::{Gpa, GpaRange};
use qvm::guest_ram::{GuestRam, OutsideRam};
use qvm::plan::{HostPlan, VmPlan};
use qvm::quiesce::Quiesced;
use qvm::vm::{Resources, Returned, StopReason, Vm, VmmHost};
use qvm::vpci::{BarKind, HostBar, HostFunction};
use smmuman_api::Client;
use smmuman_server::Grant;
use spin::Mutex;

/// Memory for one VM's CPU stage-2 tables (root, a few next-level tables, side pages).
const STAGE2_POOL: u64 = 256 << 10;
/// One time slice: the EL2 timer ends the guest's turn after this many counter ticks per
/// second of the counter's frequency (10 ms). The host's work for the VM's exits counts
/// against it (`world_switch::SliceAccounting::Charged`), and what one slice may make the host do is
/// bounded (`qvm::slice_work`).
const SLICE_PER_SECOND: u64 = 100;
/// Rounds of the host loop before VMs that have not stopped are abandoned (their time limits
/// stop them long before).
const MAX_ROUNDS: u32 = 10_000_000;

/// What the host hands one VMM task. A VM that stopped gets it back (RAM scrubbed), so it can
/// start again in the same RAM with the same devices.
struct VmSetup {
    plan: VmPlan<'static>,
    image: &'static [u8],
    ram: VmRam,
    ram_hpa: PhysAddr,
    functions: heapless::Vec<EcamFunction, { qvm::plan::MAX_PASS }>,
    stage2: DaemonMemory,
    vmid: u8,
    manager: bool,
    accounting: SliceAccounting,
    life: LifeControls,
    /// Restarts left from the plan's `restart N`.
    restarts: u8,
}

/// Where a VMM task is between the host's stage-2 check and the guest's first instruction.
#[derive(Clone, Copy)]
enum Check {
    /// Nothing asked.
    Idle,
    /// The VMM asks the host to compare its CPU stage 2 with the SMMU's translation.
    Asked(CheckRequest),
    /// The host's answer: the two agree on every page.
    Answered(bool),
}

/// What the host compares for a VMM.
#[derive(Clone, Copy)]
struct CheckRequest {
    vttbr: u64,
    vtcr: u64,
    sid: StreamId,
    ram: GpaRange,
}

/// How a VM's runs ended, for the host's summary.
#[derive(Clone, Copy)]
struct Ended {
    /// Every run exited with status 0.
    ok: bool,
    /// Runs that ended.
    runs: u32,
}

static SETUPS: Mutex<[Option<VmSetup>; MAX_CLIENTS]> = Mutex::new([const { None }; MAX_CLIENTS]);
static CHECKS: Mutex<[Check; MAX_CLIENTS]> = Mutex::new([Check::Idle; MAX_CLIENTS]);
static ENDED: Mutex<[Option<Ended>; MAX_CLIENTS]> = Mutex::new([None; MAX_CLIENTS]);

/// How the host runs its VMs. The product image uses [`HostOptions::PRODUCT`]; only the test
/// image (`scenarios/`) asks for anything else (a control's accounting, a small event queue).
#[derive(Clone, Copy, Debug)]
pub struct HostOptions {
    /// How a VM's time slice is accounted (the product: `Charged`).
    pub accounting: SliceAccounting,
    /// How the SMMU is set up when the plan starts the manager.
    pub iommu: IommuOptions,
    /// The life cycle's test controls (the product: none).
    pub life: LifeControls,
    /// Test image only: called once per pass of the host loop, before the life cycle's
    /// requests are acted on (a script of `lifecycle::start_vm`/`stop_vm` calls standing in
    /// for the operator). The product: `None`.
    pub each_pass: Option<fn()>,
}

impl HostOptions {
    /// What the product image runs: slices charged, the SMMU's default queues, every
    /// stopping VM quiesced and scrubbed.
    pub const PRODUCT: Self = Self {
        accounting: SliceAccounting::Charged,
        iommu: IommuOptions::DEFAULT,
        life: LifeControls::PRODUCT,
        each_pass: None,
    };
}

/// Steps of a VM's stop that only the test image may leave out, to show they matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifeControls {
    /// Leave the devices as the guest left them (no bus-master-off, no FLR, no settle time):
    /// the stale-DMA test's control.
    pub skip_quiesce: bool,
    /// Leave the RAM as the guest left it: the scrub test's control.
    pub skip_scrub: bool,
}

impl LifeControls {
    /// Every step taken.
    pub const PRODUCT: Self = Self {
        skip_quiesce: false,
        skip_scrub: false,
    };
}

/// Runs the host plan: prints its `RESULT scenario=host-plan` record, leaves every SMMU
/// aborting, returns the exit code.
pub fn run(p: &mut Platform, options: HostOptions) -> u32 {
    match run_vms(p, options) {
        Ok(outcome) => finish(outcome),
        Err(code) => {
            crate::failsafe::leave_safe("host-plan");
            code
        }
    }
}

/// Runs every VM of the host plan until all are gone, their time slices accounted as
/// `options.accounting` says (the product: `Charged`); the outcome says whether each guest exited
/// with status 0.
///
/// # Errors
/// The exit code, after a `FATAL reason=host-plan` record: nothing started.
pub fn run_vms(p: &mut Platform, options: HostOptions) -> Result<Outcome, u32> {
    let accounting = options.accounting;
    let plan = read_plan(p)?;
    if plan.vms.len() > MAX_CLIENTS {
        console::line(format_args!(
            "FATAL reason=host-plan detail=\"the plan names {} VMs; this host serves {MAX_CLIENTS}\"",
            plan.vms.len()
        ));
        return Err(exit_code::BAD_BOARD);
    }
    console::line(format_args!(
        "HOST plan=initrd:{} vms={} manager={}",
        initrd::PLAN_FILE,
        plan.vms.len(),
        if plan.manager { "on" } else { "off" }
    ));
    // Everything each VM needs from the platform, before the IOMMU takes the daemon pool.
    let mut grants: heapless::Vec<
        heapless::Vec<Grant, { crate::bringup::platform::MAX_GRANTS }>,
        MAX_CLIENTS,
    > = heapless::Vec::new();
    let mut count = 0;
    for (i, vm) in plan.vms.iter().enumerate() {
        match setup(p, vm, i, plan.manager, accounting, options.life) {
            Ok((s, g)) => {
                if let Some(slot) = SETUPS.lock().get_mut(i) {
                    *slot = Some(s);
                }
                let _ = grants.push(g);
                count += 1;
            }
            Err(why) => {
                let mut text: heapless::String<320> = heapless::String::new();
                let _ = write_value(&mut text, &why);
                console::line(format_args!(
                    "FATAL reason=host-plan vm={} detail={text}",
                    vm.name
                ));
                return Err(exit_code::BAD_BOARD);
            }
        }
    }
    let mut manager = if plan.manager {
        match manager_task::start(p, options.iommu) {
            Ok(m) => Some(m),
            Err(outcome) => return Ok(outcome),
        }
    } else {
        console::line(format_args!(
            "HOST manager=off detail=\"no smmuman: the SMMU stays aborting all DMA\""
        ));
        crate::bringup::iommu::abort_all(p);
        None
    };
    if let Some(m) = manager.as_mut() {
        for (i, (vm, g)) in plan.vms.iter().zip(grants.iter()).enumerate() {
            // Its RAM and its pass-through functions: the VMM may attach nothing else. A
            // function the manager does not control is left to the VMM's client rules.
            let devices: heapless::Vec<_, { qvm::plan::MAX_PASS }> =
                vm.devices().filter(|d| m.controls(*d)).collect();
            if !manager_task::assign(m, i, vm.name, g, &devices) {
                return Ok(Outcome::fail().with("reason", "assignment refused"));
            }
        }
        manager_task::open_mailboxes();
    }
    {
        let mut life = LIFECYCLE.lock();
        for (i, vm) in plan.vms.iter().enumerate() {
            life.add(i, vm.name);
        }
    }
    let resident = p.args.get("stay") == Some("1");
    let mut tasks: heapless::Vec<Option<Task>, MAX_CLIENTS> = heapless::Vec::new();
    for _ in 0..count {
        let _ = tasks.push(None);
    }
    let mut announced = false;
    manager_task::serve_tasks(
        p,
        manager.as_mut(),
        &mut tasks,
        MAX_ROUNDS,
        &mut |m: Option<&mut Mgr>, tasks: &mut [Option<Task>]| {
            if let Some(hook) = options.each_pass {
                hook();
            }
            let mut m = m;
            if let Some(m) = m.as_deref_mut() {
                crate::operator::serve(p, m, &host_vms(&plan));
            }
            let more = service_pass(m, tasks);
            if resident && !more && !announced {
                announced = true;
                console::line(format_args!(
                    "HOST state=resident detail=\"the plan's VMs stopped; serving the manager and life-cycle requests until QEMU ends\""
                ));
            }
            more || resident
        },
    );
    let ended = ENDED.lock();
    let ok = ended
        .iter()
        .take(count)
        .filter(|e| e.is_some_and(|e| e.ok))
        .count();
    let runs: u32 = ended.iter().take(count).flatten().map(|e| e.runs).sum();
    let outcome = if ok == count {
        Outcome::pass()
    } else {
        Outcome::fail()
    };
    Ok(outcome
        .with("vms", count)
        .with("exited_ok", ok)
        .with("runs", runs))
}

/// The host loop's own work, once per pass (after the manager served the mailboxes and the
/// SMMU's events): answer the VMMs' stage-2 checks, and give each VM that is `Starting` (the
/// plan's VMs at first, then those [`super::lifecycle::start_vm`] asked for) a VMM task.
/// Returns whether any VM is not stopped (the host then keeps serving). The operator's
/// channel polls from here too.
fn service_pass(m: Option<&mut Mgr>, tasks: &mut [Option<Task>]) -> bool {
    if let Some(m) = m {
        answer_checks(m);
    }
    let mut life = LIFECYCLE.lock();
    while let Some(i) = life.take_start(|i| tasks.get(i).is_some_and(Option::is_none)) {
        match Task::spawn(vm_main, i) {
            Some(t) => {
                if let Some(slot) = tasks.get_mut(i) {
                    *slot = Some(t);
                }
            }
            None => {
                console::line(format_args!(
                    "VM index={i} stop reason=no-task status=-1 detail=\"no free task stack\""
                ));
                life.set(i, VmState::Stopped);
            }
        }
    }
    life.any_active()
}

/// The plan's VMs as the operator sees them, from the life-cycle table
/// ([`super::lifecycle::vm_at`]): a VM whose last run failed (refused, crashed, out of time,
/// a non-zero exit) is `Failed` once stopped.
fn host_vms(plan: &HostPlan<'_>) -> heapless::Vec<smmuman_server::admin::HostVm, MAX_CLIENTS> {
    use smmuman_admin_api::{Name, VmState as Seen};
    (0..plan.vms.len().min(MAX_CLIENTS))
        .filter_map(|i| {
            let (name, state, last_ok) = super::lifecycle::vm_at(i)?;
            Some(smmuman_server::admin::HostVm {
                name: Name::new(name).unwrap_or_default(),
                client: plan.manager.then(|| manager_task::client_id(i)),
                state: match (state, last_ok) {
                    (VmState::Starting, None) => Seen::Planned,
                    (VmState::Starting | VmState::Running | VmState::Stopping, _) => Seen::Running,
                    (VmState::Stopped, Some(false)) => Seen::Failed,
                    (VmState::Stopped, _) => Seen::Stopped,
                },
            })
        })
        .collect()
}

/// Prints the host's `RESULT` record and leaves every SMMU aborting.
fn finish(outcome: Outcome) -> u32 {
    let mut line: heapless::String<640> = heapless::String::new();
    let _ = outcome.write_result("host-plan", &mut line);
    console::line(format_args!("{line}"));
    crate::failsafe::leave_safe("shutdown");
    outcome.status().exit_code()
}

/// The host plan from the initrd archive, or the exit code after a `FATAL` record.
fn read_plan(p: &Platform) -> Result<HostPlan<'static>, u32> {
    let fatal = |detail: &dyn fmt::Display| {
        let mut text: heapless::String<400> = heapless::String::new();
        let _ = write_value(&mut text, detail);
        console::line(format_args!("FATAL reason=host-plan detail={text}"));
        exit_code::BAD_BOARD
    };
    let Some(archive) = p.archive else {
        return Err(fatal(&"no host plan: boot with an initrd archive holding host.plan (cargo xtask run builds one)"));
    };
    let Some(bytes) = archive.file(initrd::PLAN_FILE) else {
        return Err(fatal(&"the initrd archive has no host.plan"));
    };
    let text = core::str::from_utf8(bytes).map_err(|e| {
        fatal(&format_args!(
            "initrd:host.plan: not UTF-8 text (byte {})",
            e.valid_up_to()
        ))
    })?;
    qvm::plan::parse(text).map_err(|e| {
        fatal(&format_args!(
            "initrd:{}:{}:{}: {}",
            initrd::PLAN_FILE,
            e.line,
            e.col,
            e.kind
        ))
    })
}

/// What the host gives the VM `vm` (client `index`), and its grants for the manager.
fn setup(
    p: &mut Platform,
    vm: &VmPlan<'static>,
    index: usize,
    manager: bool,
    accounting: SliceAccounting,
    life: LifeControls,
) -> Result<
    (
        VmSetup,
        heapless::Vec<Grant, { crate::bringup::platform::MAX_GRANTS }>,
    ),
    SetupError,
> {
    let archive: Archive<'static> = p.archive.ok_or(SetupError::NoArchive)?;
    let image = archive
        .guests()
        .find(|(name, _)| *name == vm.guest)
        .map(|(_, bytes)| bytes)
        .ok_or(SetupError::NoImage(vm.guest))?;
    let memory = p.vm_memory(vm.name).map_err(SetupError::Authority)?;
    if vm.ram > memory.first.size() {
        return Err(SetupError::RamTooBig {
            planned: vm.ram,
            assigned: memory.first,
        });
    }
    let ram_hpa = memory.first.start();
    let gpa = qvm::vm::guest_ram_range(vm, ram_hpa).ok_or(SetupError::RamTooBig {
        planned: vm.ram,
        assigned: memory.first,
    })?;
    let mut functions = heapless::Vec::new();
    for pass in &vm.pass {
        let f = EcamFunction::new(p, pass.bdf).ok_or(SetupError::NoFunction(pass.bdf))?;
        let _ = functions.push(f);
    }
    let block = p
        .alloc_daemon_block(STAGE2_POOL, 4096)
        .ok_or(SetupError::NoStage2Memory)?;
    // SAFETY: the block was just allocated from the daemon pool for this VM's CPU stage-2
    // tables; only its VMM reaches it, through this window, and the CPU's walks read it.
    let window = unsafe { RamWindow::identity(&[block]) };
    let stage2 = DaemonMemory::new(window).map_err(|_| SetupError::NoStage2Memory)?;
    console::line(format_args!(
        "VM vm={} guest={} ram={}+{:#x} gpa={} unity={} vmid={} stage2_pool={block}",
        vm.name,
        vm.guest,
        ram_hpa,
        vm.ram,
        gpa,
        u8::from(vm.unity),
        index + 1
    ));
    let mut ram = VmRam {
        view: memory.view,
        gpa,
        hpa: ram_hpa,
    };
    // Whatever the RAM held before (firmware, a previous boot) is not the guest's to read.
    scrub(vm.name, &mut ram, life.skip_scrub, "before-first-start");
    Ok((
        VmSetup {
            plan: vm.clone(),
            image,
            ram,
            ram_hpa,
            functions,
            stage2,
            vmid: (index + 1) as u8,
            manager,
            accounting,
            life,
            restarts: vm.restarts,
        },
        memory.grants,
    ))
}

/// Why the host cannot give a VM what its plan asks.
#[derive(Clone, Copy, Debug)]
enum SetupError {
    NoArchive,
    NoImage(&'static str),
    Authority(&'static str),
    RamTooBig { planned: u64, assigned: PhysRange },
    NoFunction(Bdf),
    NoStage2Memory,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoArchive => f.write_str("no initrd archive"),
            Self::NoImage(name) => write!(f, "guest image guests/{name} is not in the initrd"),
            Self::Authority(why) => write!(f, "board config: {why}"),
            Self::RamTooBig { planned, assigned } => write!(
                f,
                "the plan asks {planned:#x} bytes of RAM; the board config assigns {assigned}"
            ),
            Self::NoFunction(bdf) => {
                write!(f, "pass pci {bdf}: no such PCI function with memory BARs")
            }
            Self::NoStage2Memory => f.write_str("no daemon memory left for the CPU stage 2"),
        }
    }
}

/// The host's side of a VMM: the console, the clock, giving the CPU away, the operator's
/// stop request, and quiescing its devices.
struct TaskHost<'y> {
    y: &'y Yielder,
    clock: GenericTimer,
    index: usize,
    skip_quiesce: bool,
}

impl VmmHost for TaskHost<'_> {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        console::line(args);
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.clock.now().as_nanos()).unwrap_or(u64::MAX)
    }

    fn yield_now(&mut self) {
        self.y.yield_now();
    }

    fn stop_requested(&self) -> bool {
        LIFECYCLE.lock().stop_requested(self.index)
    }

    fn quiesce(&mut self, f: &mut dyn HostFunction) -> Quiesced {
        if self.skip_quiesce {
            return Quiesced::SkippedControl;
        }
        // Wait by giving the CPU to the other VMs and the manager.
        qvm::quiesce::quiesce(f, &mut |ms| {
            let until = self.now_ns().saturating_add(ms.saturating_mul(1_000_000));
            while self.now_ns() < until {
                self.yield_now();
            }
        })
    }
}

/// One VMM task: connect, then run the VM (and its plan's restarts); after each run the host
/// scrubs its RAM before the VM counts as stopped. The setup goes back to [`SETUPS`] so the
/// operator can start the VM again.
fn vm_main(y: &Yielder, index: usize) {
    let Some(setup) = SETUPS.lock().get_mut(index).and_then(Option::take) else {
        // A VM whose VMM refused it earlier kept nothing to start again with.
        console::line(format_args!(
            "VM index={index} stop reason=refused status=-1 detail=\"nothing to start again with: its VMM refused it before\""
        ));
        LIFECYCLE.lock().set(index, VmState::Stopped);
        return;
    };
    let VmSetup {
        plan,
        image,
        mut ram,
        ram_hpa,
        mut functions,
        mut stage2,
        vmid,
        manager,
        accounting,
        life,
        mut restarts,
    } = setup;
    let mut client = if manager {
        MAILBOXES
            .get(index)
            .and_then(|mb| Client::connect(MailboxTransport::new(mb, || y.yield_now())).ok())
    } else {
        None
    };
    loop {
        let resources = Resources {
            ram_hpa,
            ram,
            functions,
            client,
            stage2_mem: stage2,
            stage2_cfg: guest_exit::cpu_stage2_config(world_switch::pa_range()),
        };
        let Some(back) = run_once(y, index, &plan, image, resources, vmid, accounting, life) else {
            // Refused before it ran: what it was given is gone with the VMM's start.
            LIFECYCLE.lock().set(index, VmState::Stopped);
            return;
        };
        let Returned {
            ram: mut r,
            functions: f,
            client: c,
            stage2_mem: m,
        } = back;
        // Quiesced and destroyed (`Vm::finish_returning`): now the RAM, before it is anyone's.
        scrub(plan.name, &mut r, life.skip_scrub, "stop");
        (ram, functions, client, stage2) = (r, f, c, m);
        let asked_to_stop = LIFECYCLE.lock().stop_requested(index);
        if restarts == 0 || asked_to_stop {
            break;
        }
        restarts -= 1;
        console::line(format_args!("VM vm={} restart left={restarts}", plan.name));
        LIFECYCLE.lock().set(index, VmState::Running);
    }
    // The connection (`client`) waits on this task's stack and ends with it: a later start
    // connects again.
    let _ = client;
    let name = plan.name;
    if let Some(slot) = SETUPS.lock().get_mut(index) {
        *slot = Some(VmSetup {
            plan,
            image,
            ram,
            ram_hpa,
            functions,
            stage2,
            vmid,
            manager,
            accounting,
            life,
            restarts: 0,
        });
    }
    LIFECYCLE.lock().set(index, VmState::Stopped);
    console::line(format_args!("VM vm={name} state=stopped"));
}

/// Zeroes a VM's RAM and cleans it to the point of coherency (`GuestRam::zero`), so the next
/// guest in it reads zeros whatever was left there, in the caches or in memory: before its
/// first start (`when=before-first-start`) and after each stop (`when=stop`, once its devices
/// are quiesced and its object destroyed). `skipped=control` for the test image's control.
fn scrub(name: &str, ram: &mut VmRam, skip: bool, when: &str) {
    let range = ram.range();
    if skip {
        console::line(format_args!(
            "SCRUB vm={name} when={when} ram={}+{:#x} bytes=0 skipped=control",
            ram.hpa,
            range.len()
        ));
        return;
    }
    let clock = GenericTimer::new();
    let began = clock.now();
    let _ = ram.zero(range.start(), range.len());
    let us = clock.now().saturating_sub(began).as_micros();
    console::line(format_args!(
        "SCRUB vm={name} when={when} ram={}+{:#x} bytes={} us={us}",
        ram.hpa,
        range.len(),
        range.len()
    ));
}

/// One run of the VM: start it, have the host check its two stage 2s, run the guest, quiesce
/// and report. `None` when the VM never started (what it was given is gone).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn run_once<W: FnMut()>(
    y: &Yielder,
    index: usize,
    plan: &VmPlan<'static>,
    image: &'static [u8],
    resources: Resources<MailboxTransport<'static, W>, VmRam, EcamFunction, DaemonMemory>,
    vmid: u8,
    accounting: SliceAccounting,
    life: LifeControls,
) -> Option<Returned<MailboxTransport<'static, W>, VmRam, EcamFunction, DaemonMemory>> {
    let name = plan.name;
    let cfg = resources.stage2_cfg;
    let host = TaskHost {
        y,
        clock: GenericTimer::new(),
        index,
        skip_quiesce: life.skip_quiesce,
    };
    let mut vm = match Vm::start(plan, image, resources, host) {
        Ok(vm) => vm,
        Err(_) => {
            // `Vm::start` printed why.
            end(
                index,
                name,
                false,
                "refused",
                &"the VMM did not start the VM",
            );
            return None;
        }
    };
    let Some(root) = vm.cpu_stage2().map(|(t, _)| t.root().0) else {
        end(index, name, false, "refused", &"no CPU stage 2");
        return Some(vm.finish_returning().1);
    };
    let (entry, dtb) = vm.entry();
    let slice = GenericTimer::new().hz() / SLICE_PER_SECOND;
    let mut cpu = El2Vcpu::new(entry.0, dtb.0, root, cfg, vmid, slice, accounting);
    if accounting == SliceAccounting::FreshPerEntry {
        // The control restores the old accounting whole: no bounds either.
        vm.set_work_limits(qvm::slice_work::WorkLimits::UNBOUNDED);
    }
    // The host's check of the two translations, when smmuman maps the VM's RAM.
    if let Some(sid) = vm.devices().iter().find_map(|d| d.sid) {
        if vm.object().is_some() {
            set_check(
                index,
                Check::Asked(CheckRequest {
                    vttbr: cpu.vttbr(),
                    vtcr: cpu.vtcr(),
                    sid,
                    ram: vm.ram().range(),
                }),
            );
            let agreed = loop {
                if let Some(Check::Answered(ok)) = CHECKS.lock().get(index).copied() {
                    break ok;
                }
                y.yield_now();
            };
            set_check(index, Check::Idle);
            if !agreed {
                LIFECYCLE.lock().set(index, VmState::Stopping);
                let (report, back) = vm.finish_returning();
                end(
                    index,
                    name,
                    false,
                    "stage2-mismatch",
                    &format_args!(
                        "the CPU and the SMMU translate the VM's RAM differently: the guest never ran (faults={})",
                        report.faults
                    ),
                );
                return Some(back);
            }
        }
    }
    let stop = vm.run(&mut cpu);
    LIFECYCLE.lock().set(index, VmState::Stopping);
    let (report, back) = vm.finish_returning();
    // A stop the host asked for (the operator's `stop`) is not a failure of the VM.
    let ok = matches!(
        stop,
        StopReason::Exited { status: 0 } | StopReason::SystemOff | StopReason::Requested
    );
    console::line(format_args!(
        "VM vm={name} stop reason={} status={} faults={} dropped={} possibly_lost={} isolated={} detail=\"{stop}\"",
        stop.tag(),
        report
            .exit_status
            .map_or(-1i64, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        report.faults,
        report.dropped,
        report.possibly_lost,
        u8::from(report.isolated)
    ));
    ended(index, ok);
    Some(back)
}

/// Counts one run of VM `index` in the host's summary and its life cycle.
fn ended(index: usize, ok: bool) {
    LIFECYCLE.lock().set_last_ok(index, ok);
    if let Some(slot) = ENDED.lock().get_mut(index) {
        let before = slot.unwrap_or(Ended { ok: true, runs: 0 });
        *slot = Some(Ended {
            ok: before.ok && ok,
            runs: before.runs + 1,
        });
    }
}

/// Sets VMM `index`'s stage-2 check state.
fn set_check(index: usize, check: Check) {
    if let Some(slot) = CHECKS.lock().get_mut(index) {
        *slot = check;
    }
}

/// Records that VM `index` ended without running (`VM ... stop` record).
fn end(index: usize, name: &str, ok: bool, reason: &str, detail: &dyn fmt::Display) {
    let mut text: heapless::String<320> = heapless::String::new();
    let _ = write_value(&mut text, detail);
    console::line(format_args!(
        "VM vm={name} stop reason={reason} status=-1 detail={text}"
    ));
    ended(index, ok);
}

/// The host's side of the stage-2 check: for each VMM that asked, compare the CPU's
/// translation of every page of its RAM with the SMMU's for its device.
fn answer_checks(m: &mut Mgr) {
    let mut checks = CHECKS.lock();
    for (i, check) in checks.iter_mut().enumerate() {
        let Check::Asked(req) = *check else { continue };
        let domain = m.backend().stream_domain(req.sid).flatten();
        let c = stage2_check::compare(
            req.ram,
            |gpa| world_switch::cpu_translate(req.vttbr, req.vtcr, gpa),
            |gpa| {
                domain.and_then(|d| {
                    m.backend()
                        .translate(d, Iova(gpa))
                        .ok()
                        .flatten()
                        .map(|t| t.pa.0)
                })
            },
        );
        console::line(format_args!(
            "STAGE2_CHECK client={} sid={} ram={} pages={} mismatches={} first={}",
            i + 1,
            req.sid,
            req.ram,
            c.pages,
            c.mismatches,
            FirstMismatch(c.first)
        ));
        *check = Check::Answered(c.agrees());
    }
}

/// A VM's RAM as its VMM sees it: guest-physical `gpa` is host-physical `hpa`, reached
/// through the host's view of the VM's RAM. Every write is cleaned to the point of coherency
/// and every read invalidated first: the guest runs with its MMU off, so its accesses do not
/// look in the CPU's caches.
struct VmRam {
    view: GuestMemory,
    gpa: GpaRange,
    hpa: PhysAddr,
}

impl VmRam {
    fn hpa_of(&self, gpa: Gpa, len: u64) -> Result<PhysAddr, OutsideRam> {
        let outside = OutsideRam { gpa, len };
        let off = gpa.0.checked_sub(self.gpa.start().0).ok_or(outside)?;
        let end = off.checked_add(len).ok_or(outside)?;
        if end > self.gpa.len() {
            return Err(outside);
        }
        Ok(PhysAddr(self.hpa.0 + off))
    }
}

impl GuestRam for VmRam {
    fn range(&self) -> GpaRange {
        self.gpa
    }

    fn write(&mut self, gpa: Gpa, bytes: &[u8]) -> Result<(), OutsideRam> {
        let len = bytes.len() as u64;
        let pa = self.hpa_of(gpa, len)?;
        if len > 0 {
            self.view.write_bytes(pa, bytes);
            self.view.sync_for_device(pa, len);
            world_switch::sync_icache();
        }
        Ok(())
    }

    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let len = buf.len() as u64;
        let pa = self.hpa_of(gpa, len)?;
        if len > 0 {
            // The guest's stores went around the cache: drop any stale copy first. (The
            // lines hold no dirty host data: the host cleans after every write.)
            world_switch::invalidate_dcache(pa.0, len);
            self.view.read_bytes(pa, buf);
        }
        Ok(())
    }

    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), OutsideRam> {
        let pa = self.hpa_of(gpa, len)?;
        if len > 0 {
            self.view.zero(pa, len);
            self.view.sync_for_device(pa, len);
        }
        Ok(())
    }
}

/// A passed-through PCI function, as its VMM reaches it: its 4 KiB of ECAM configuration
/// space (PCIe Base Specification §7.2.2) and the BARs enumeration assigned.
struct EcamFunction {
    config: MmioRegion,
    bars: [Option<HostBar>; 6],
}

impl EcamFunction {
    fn new(p: &Platform, bdf: Bdf) -> Option<Self> {
        let f = p.pci.function(bdf)?;
        let host = &p.board.pcie;
        let bus = bdf.bus.checked_sub(host.bus_start)?;
        let offset = (u64::from(bus) << 20)
            | (u64::from(bdf.dev & 0x1f) << 15)
            | (u64::from(bdf.func & 7) << 12);
        if offset + 4096 > host.ecam.size() {
            return None;
        }
        let mut bars = [None; 6];
        for bar in f.bars.iter().flatten() {
            let (kind, prefetchable) = match bar.kind {
                crate::pci::BarKind::Mem32 { prefetchable } => (BarKind::Mem32, prefetchable),
                crate::pci::BarKind::Mem64 { prefetchable } => (BarKind::Mem64, prefetchable),
                _ => continue,
            };
            let Some(hpa) = bar.cpu_address else { continue };
            if let Some(slot) = bars.get_mut(usize::from(bar.index)) {
                *slot = Some(HostBar {
                    kind,
                    hpa,
                    size: bar.size,
                    prefetchable,
                });
            }
        }
        bars.iter().any(Option::is_some).then_some(())?;
        // SAFETY: the function's configuration page inside the host bridge's ECAM window
        // (checked above to lie inside it), device memory in the EL2 map. From here only this
        // VM's VMM touches this function's configuration space: the host passed it through.
        let config = unsafe { MmioRegion::new(PhysAddr(host.ecam.start().0 + offset), 4096) };
        Some(Self { config, bars })
    }
}

impl HostFunction for EcamFunction {
    fn config_read32(&mut self, offset: u16) -> u32 {
        if !offset.is_multiple_of(4) || offset >= 4096 {
            return u32::MAX;
        }
        self.config.read32(usize::from(offset))
    }

    fn config_write16(&mut self, offset: u16, value: u16) {
        if offset.is_multiple_of(2) && offset < 4096 {
            self.config.write16(usize::from(offset), value);
        }
    }

    fn bar(&self, index: u8) -> Option<HostBar> {
        self.bars.get(usize::from(index)).copied().flatten()
    }
}
