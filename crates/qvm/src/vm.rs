//! The VMM: one guest, its RAM, its pass-through functions, its CPU stage 2 and its object in
//! the smmuman manager, from start to report.
//!
//! * [`Vm::start`] applies the client rules (`smmuman_api::VmmDmaPolicy`), creates the VM
//!   object, attaches the functions, maps the RAM windows, builds the CPU stage 2 from the same
//!   list ([`GuestMap`]), loads the guest ELF and writes its device tree.
//! * [`Vm::handle`] answers one [`Exit`]; [`Vm::run`] loops until the guest stops.
//! * [`Vm::finish`] quiesces the pass-through functions ([`crate::quiesce`]), reads every fault
//!   record back, logs it, destroys the object and reports; [`Vm::finish_returning`] also hands
//!   the resources back so the host can scrub the RAM and start the VM again.

use crate::abi;
use crate::console::LineBuffer;
use crate::elf;
use crate::fault_log::{self, Burst, FaultLog};
use crate::gpa::{Gpa, GpaRange};
use crate::guest_dt::GuestDt;
use crate::guest_map::{self, GuestMap, MapListError, RegionKind};
use crate::guest_ram::GuestRam;
use crate::mmio::{self, Target};
pub use crate::outcome::{Action, Device, Report, RuleProblem, StartError, StopReason};
use crate::plan::{VmPlan, MAX_PASS};
use crate::quiesce::Quiesced;
use crate::slice_work::{SliceWork, Work, WorkLimits};
use crate::vcpu::{Exit, Vcpu};
use crate::vpci::{self, HostFunction, Vpci};
use core::fmt::{self, Write as _};
use iommu_core::{Bdf, DmaMemory, PhysAddr};
use smmuman_api::{
    CallError, Client, Decision, DeviceSel, FaultBatch, ObjectFlags, ObjectId, PassThrough,
    Problem, Transport, VmDescription, VmmDmaPolicy,
};
use stage2::{Stage2Config, Stage2Table};

/// What the VMM needs of its host besides the guest's resources.
pub trait VmmHost {
    /// Writes one line to the host's console (the host adds nothing to it).
    fn line(&mut self, args: fmt::Arguments<'_>);
    /// A monotonic clock, in nanoseconds.
    fn now_ns(&self) -> u64;
    /// Gives the CPU to others for a while (another VM, the manager).
    fn yield_now(&mut self);
    /// Whether the host asks the VM to stop (checked whenever the VM would yield; the guest
    /// then stops with [`StopReason::Requested`]). Default: never.
    fn stop_requested(&self) -> bool {
        false
    }
    /// Quiesces a pass-through function's DMA as its VM stops, before the VM object is
    /// destroyed ([`crate::quiesce`]: bus mastering off, FLR where offered, 100 ms). The
    /// default waits by yielding until [`VmmHost::now_ns`] has moved on.
    fn quiesce(&mut self, f: &mut dyn HostFunction) -> Quiesced {
        crate::quiesce::quiesce(f, &mut |ms| {
            let until = self.now_ns().saturating_add(ms.saturating_mul(1_000_000));
            while self.now_ns() < until {
                self.yield_now();
            }
        })
    }
}

/// What the host gives a VM.
#[derive(Debug)]
pub struct Resources<T: Transport, R, H, M> {
    /// Host-physical base of the VM's RAM (its length is the plan's `ram`).
    pub ram_hpa: PhysAddr,
    /// The VM's RAM; its [`GuestRam::range`] must be [`guest_ram_range`] of the plan. The
    /// host hands it over scrubbed (zeroed, and cleaned to the point of coherency): nothing a
    /// previous guest or the host left there may reach this guest. The VMM writes only the
    /// guest image and the device tree into it.
    pub ram: R,
    /// The pass-through functions, in the plan's order.
    pub functions: heapless::Vec<H, MAX_PASS>,
    /// The manager connection (`None`: no manager is running).
    pub client: Option<Client<T>>,
    /// Memory for the CPU stage-2 tables.
    pub stage2_mem: M,
    /// The CPU stage 2's address sizes (the host's VTCR_EL2).
    pub stage2_cfg: Stage2Config,
}

/// What [`Vm::finish_returning`] hands back: [`Resources`] as the VM leaves them (devices
/// quiesced, object destroyed, CPU tables freed; the RAM holds what the guest left).
#[derive(Debug)]
pub struct Returned<T: Transport, R, H, M> {
    /// The VM's RAM, not yet scrubbed.
    pub ram: R,
    /// The pass-through functions, quiesced.
    pub functions: heapless::Vec<H, MAX_PASS>,
    /// The manager connection.
    pub client: Option<Client<T>>,
    /// The CPU stage 2's memory (its tables given back).
    pub stage2_mem: M,
}

/// Where a plan's RAM sits in guest-physical space: at [`abi::RAM_BASE`], or at its
/// host-physical address for a unity VM.
pub fn guest_ram_range(plan: &VmPlan<'_>, ram_hpa: PhysAddr) -> Option<GpaRange> {
    let base = if plan.unity {
        Gpa(ram_hpa.get())
    } else {
        Gpa(abi::RAM_BASE)
    };
    GpaRange::new(base, plan.ram)
}

/// Pages of fault records [`Vm::finish`] reads at most (`FAULTS_PER_PAGE` entries each).
const MAX_FAULT_PAGES: usize = 1024;

/// A running VM.
pub struct Vm<'p, T: Transport, R, H, M, O> {
    name: &'p str,
    time_limit_ms: u64,
    client: Option<Client<T>>,
    object: Option<ObjectId>,
    devices: heapless::Vec<Device, MAX_PASS>,
    ram: R,
    vpci: Vpci<H>,
    map: GuestMap,
    cpu: Option<Stage2Table>,
    mem: M,
    host: O,
    entry: Gpa,
    dtb: Gpa,
    console: LineBuffer,
    started_ns: u64,
    exit_status: Option<u64>,
    stop: Option<StopReason>,
    isolated: bool,
    faults: FaultLog,
    work: SliceWork,
}

impl<T: Transport, R, H, M, O> fmt::Debug for Vm<'_, T, R, H, M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm")
            .field("name", &self.name)
            .field("object", &self.object)
            .field("devices", &self.devices)
            .field("entry", &self.entry)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl<'p, T, R, H, M, O> Vm<'p, T, R, H, M, O>
where
    T: Transport,
    R: GuestRam,
    H: HostFunction,
    M: DmaMemory,
    O: VmmHost,
{
    /// Starts a VM of `plan` with guest image `image`.
    ///
    /// # Errors
    /// [`StartError`]; everything created on the way (the VM object, the CPU tables) is undone
    /// and a `VMM vm=<name> refused ...` line says why.
    pub fn start(
        plan: &VmPlan<'p>,
        image: &[u8],
        res: Resources<T, R, H, M>,
        mut host: O,
    ) -> Result<Self, StartError> {
        let name = plan.name;
        let Resources {
            ram_hpa,
            ram,
            functions,
            mut client,
            stage2_mem,
            stage2_cfg,
        } = res;
        let refuse = |host: &mut O, e: StartError| {
            host.line(format_args!("VMM vm={name} refused: {e}"));
            Err(e)
        };
        let expected = guest_ram_range(plan, ram_hpa);
        let ram_range = ram.range();
        if expected != Some(ram_range) {
            return refuse(
                &mut host,
                StartError::Ram {
                    expected,
                    got: ram_range,
                },
            );
        }
        if plan.unity && overlaps_devices(ram_range) {
            return refuse(&mut host, StartError::UnityOverlap { ram: ram_range });
        }
        if functions.len() != plan.pass.len() {
            return refuse(
                &mut host,
                StartError::Functions {
                    planned: plan.pass.len(),
                    given: functions.len(),
                },
            );
        }

        // The client rules (smmuman-api `VmmDmaPolicy`, docs/architecture.md "client rules").
        let mut pass = [PassThrough {
            name: "",
            device: DeviceSel::pci(Bdf::default()),
            dma: true,
        }; MAX_PASS];
        for (slot, p) in pass.iter_mut().zip(plan.pass.iter()) {
            *slot = PassThrough {
                name: p.text,
                device: DeviceSel::pci(p.bdf),
                dma: true,
            };
        }
        let desc = VmDescription {
            name,
            unity_mapped: plan.unity,
            devices: pass.get(..plan.pass.len()).unwrap_or(&[]),
        };
        let decision = VmmDmaPolicy::assess(&desc, client.as_mut());
        let isolated = match decision {
            Decision::Refuse { reason } => {
                host.line(format_args!("VMM vm={name} {decision}"));
                let (device, problem) = match reason.iter().next() {
                    Some(Problem::NoManager { device, .. }) => (*device, RuleProblem::NoManager),
                    Some(Problem::UnknownDevice { device, .. }) => {
                        (*device, RuleProblem::UnknownDevice)
                    }
                    Some(Problem::NoAnswer { device, .. }) => (*device, RuleProblem::NoAnswer),
                    None => (DeviceSel::pci(Bdf::default()), RuleProblem::NoAnswer),
                };
                let e = StartError::Refused {
                    device,
                    problem,
                    problems: reason.len(),
                };
                return refuse(&mut host, e);
            }
            Decision::StartUnisolated { .. } => {
                host.line(format_args!("VMM vm={name} {decision}"));
                false
            }
            Decision::Start => true,
        };

        let mut vm = Vm {
            name,
            time_limit_ms: plan.time_limit_ms,
            // An unisolated VM does not use the manager at all.
            client: if isolated { client } else { None },
            object: None,
            devices: heapless::Vec::new(),
            ram,
            vpci: Vpci::new(),
            map: GuestMap::new(),
            cpu: None,
            mem: stage2_mem,
            host,
            entry: Gpa(0),
            dtb: Gpa(0),
            console: LineBuffer::new(),
            started_ns: 0,
            exit_status: None,
            stop: None,
            isolated,
            faults: FaultLog::default(),
            work: SliceWork::new(WorkLimits::DEFAULT),
        };
        if let Err(e) = vm.assemble(plan, image, functions, ram_hpa, stage2_cfg) {
            vm.undo();
            return refuse(&mut vm.host, e);
        }
        vm.started_ns = vm.host.now_ns();
        let ram = vm.ram.range();
        let (entry, dtb, iso) = (vm.entry, vm.dtb, u8::from(vm.isolated));
        vm.host.line(format_args!(
            "VMM vm={name} started entry={entry} dtb={dtb} ram={ram} isolated={iso}"
        ));
        for d in vm.devices.clone() {
            let mut sid: heapless::String<12> = heapless::String::new();
            let _ = match d.sid {
                Some(s) => write!(sid, "{s}"),
                None => write!(sid, "none"),
            };
            vm.host.line(format_args!(
                "VMM vm={name} device host={} guest={} sid={sid}",
                d.host, d.guest
            ));
        }
        Ok(vm)
    }

    /// Everything after the client rules: manager object, PCI bus, list, tables, image, tree.
    fn assemble(
        &mut self,
        plan: &VmPlan<'p>,
        image: &[u8],
        functions: heapless::Vec<H, MAX_PASS>,
        ram_hpa: PhysAddr,
        cfg: Stage2Config,
    ) -> Result<(), StartError> {
        let ram_range = self.ram.range();
        // The virtual bus: each function gets its guest address and pre-assigned BARs.
        for (h, p) in functions.into_iter().zip(plan.pass.iter()) {
            let guest = self.vpci.add(p.bdf, h).map_err(StartError::Vpci)?;
            let _ = self.devices.push(Device {
                host: p.bdf,
                guest,
                sid: None,
            });
        }
        // The one list: RAM now; BARs join it when the guest turns memory decoding on.
        self.map
            .add(ram_range.start(), ram_hpa, ram_range.len(), RegionKind::Ram)
            .map_err(StartError::Map)?;

        if let Some(c) = self.client.as_mut() {
            let flags = if plan.unity {
                ObjectFlags::UNITY
            } else {
                ObjectFlags::empty()
            };
            let object = c
                .create_object(flags)
                .map_err(|error| StartError::Manager {
                    step: "create_object",
                    error,
                })?
                .object;
            self.object = Some(object);
            for d in self.devices.iter_mut() {
                let sel = DeviceSel::pci(d.host);
                c.attach(object, sel).map_err(|error| StartError::Manager {
                    step: "attach",
                    error,
                })?;
                d.sid = c.lookup_device(sel).ok().map(|r| r.sid);
            }
            for batch in self.map.smmu_batches() {
                c.map_batch(object, batch)
                    .map_err(|error| StartError::Manager {
                        step: "map_batch",
                        error,
                    })?;
            }
        }

        self.cpu = Some(
            self.map
                .cpu_stage2(&mut self.mem, cfg)
                .map_err(StartError::Map)?,
        );

        // The RAM comes scrubbed from the host (`Resources::ram`): only the image and the
        // device tree are written into it.
        let loaded = elf::load(image, &mut self.ram).map_err(StartError::Elf)?;
        let dt = GuestDt {
            ram: ram_range,
            bootargs: plan.bootargs,
        };
        let mut buf = [0u8; 2048];
        let len = dt.write(&mut buf).map_err(StartError::Dt)?;
        self.ram
            .write(dt.address(), buf.get(..len).unwrap_or(&[]))
            .map_err(StartError::Write)?;
        self.entry = loaded.entry;
        self.dtb = dt.address();
        Ok(())
    }

    /// Undoes a failed start: the object goes (its devices back to deny), the tables too.
    fn undo(&mut self) {
        if let (Some(c), Some(o)) = (self.client.as_mut(), self.object.take()) {
            let _ = c.destroy_object(o);
        }
        if let Some(t) = self.cpu.take() {
            t.destroy(&mut self.mem);
        }
        for h in self.vpci.hosts_mut() {
            h.config_write16(vpci::reg::COMMAND, 0);
        }
    }

    /// The VM's name.
    pub fn name(&self) -> &'p str {
        self.name
    }

    /// Its pass-through functions.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Its VM object in the manager (`None` when unisolated).
    pub fn object(&self) -> Option<ObjectId> {
        self.object
    }

    /// The CPU stage 2 (for VTTBR_EL2) and the memory its tables are in.
    pub fn cpu_stage2(&self) -> Option<(&Stage2Table, &M)> {
        self.cpu.as_ref().map(|t| (t, &self.mem))
    }

    /// The GPA→HPA list.
    pub fn guest_map(&self) -> &GuestMap {
        &self.map
    }

    /// The guest's RAM.
    pub fn ram(&self) -> &R {
        &self.ram
    }

    /// The host (console, clock).
    pub fn host_mut(&mut self) -> &mut O {
        &mut self.host
    }

    /// The manager connection (`None` when unisolated).
    pub fn client_mut(&mut self) -> Option<&mut Client<T>> {
        self.client.as_mut()
    }

    /// Where the guest starts, and its device tree.
    pub fn entry(&self) -> (Gpa, Gpa) {
        (self.entry, self.dtb)
    }

    /// Sets the vCPU up for the guest's entry (guest ABI: pc = e_entry, x0 = the device tree,
    /// x1..x3 = 0) and restarts the time limit.
    pub fn prepare(&mut self, vcpu: &mut impl Vcpu) {
        vcpu.set_pc(self.entry.get());
        vcpu.set_reg(0, self.dtb.get());
        for r in 1..=3 {
            vcpu.set_reg(r, 0);
        }
        self.started_ns = self.host.now_ns();
    }

    /// Sets what one time slice of this VM may make the host do ([`WorkLimits::DEFAULT`]
    /// unless changed).
    pub fn set_work_limits(&mut self, limits: WorkLimits) {
        self.work = SliceWork::new(limits);
    }

    /// The work counted in the current slice, and how many slices ended early.
    pub fn slice_work(&self) -> &SliceWork {
        &self.work
    }

    /// Runs the guest until it stops, yielding to the host when the guest waits, its slice
    /// ends or it used up what one slice may make the host do; after each yield the vCPU
    /// starts a new slice ([`Vcpu::next_slice`]).
    pub fn run(&mut self, vcpu: &mut impl Vcpu) -> StopReason {
        loop {
            let exit = vcpu.run();
            match self.handle(exit, vcpu) {
                Action::Resume => {}
                Action::Yield => {
                    self.host.yield_now();
                    vcpu.next_slice();
                }
                Action::Stop(r) => return r,
            }
        }
    }

    /// Handles one exit. Past a bound of [`WorkLimits`] a `Resume` becomes a `Yield` (or a
    /// stop at the time limit): the VM continues in its next slice, with a fresh budget.
    pub fn handle(&mut self, exit: Exit, vcpu: &mut impl Vcpu) -> Action {
        if let Some(r) = self.stop {
            return Action::Stop(r);
        }
        self.work.charge(Work::Exits, 1);
        let action = match self.handle_exit(exit, vcpu) {
            Action::Resume if self.work.exhausted().is_some() => {
                self.work.throttle();
                self.check_time()
            }
            Action::Yield => {
                self.work.reset();
                Action::Yield
            }
            a => a,
        };
        if let Action::Stop(r) = action {
            self.stop = Some(r);
            let name = self.name;
            let host = &mut self.host;
            self.console
                .flush(|l| host.line(format_args!("GUEST [{name}] {l}")));
            self.host.line(format_args!(
                "VMM vm={name} stopped reason={} detail=\"{r}\"",
                r.tag()
            ));
        }
        action
    }

    /// What one exit asks for, before the slice's bounds.
    fn handle_exit(&mut self, exit: Exit, vcpu: &mut impl Vcpu) -> Action {
        match exit {
            Exit::Hvc { imm } => {
                self.work.charge(Work::Hypercalls, 1);
                self.hvc(imm, vcpu)
            }
            Exit::Smc { .. } => {
                self.work.charge(Work::Hypercalls, 1);
                // No secure firmware for guests: every SMC is NOT_SUPPORTED (SMCCC §5.2).
                vcpu.set_reg(0, abi::RET_NOT_SUPPORTED);
                vcpu.set_pc(vcpu.pc().wrapping_add(4));
                Action::Resume
            }
            Exit::DataAbort { ipa, iss, .. } => self.data_abort(Gpa(ipa), iss, vcpu),
            Exit::InstructionAbort { ipa, .. } => {
                Action::Stop(StopReason::InstructionAbort { gpa: Gpa(ipa) })
            }
            Exit::Wfx { .. } => {
                vcpu.set_pc(vcpu.pc().wrapping_add(4));
                self.check_time()
            }
            Exit::Timer | Exit::HostIrq => {
                // Like a system logger: what the IOMMU refused so far is read back and logged
                // while the guest runs, before the VM object's ledger can fill.
                self.read_faults();
                self.check_time()
            }
            Exit::SysReg { access } => Action::Stop(StopReason::SysReg { access }),
            Exit::Other { ec, iss, far } => Action::Stop(StopReason::Exception { ec, iss, far }),
        }
    }

    /// Reads every fault record the manager holds for the VM object (a fault barrier: the
    /// IOMMU is drained first) and logs them, one `DMA_FAULT` line per burst
    /// ([`crate::fault_log`]). Returns the manager's error, if it refused.
    fn read_faults(&mut self) -> Option<CallError> {
        let (Some(c), Some(object)) = (self.client.as_mut(), self.object) else {
            return None;
        };
        let name = self.name;
        let devices = &self.devices;
        let host = &mut self.host;
        let log = &mut self.faults;
        let emit = |host: &mut O, b: Burst| {
            let device = devices
                .iter()
                .find(|d| d.sid == Some(b.sid))
                .map(|d| d.host);
            host.line(format_args!(
                "{}",
                fault_log::Line {
                    vm: name,
                    device,
                    burst: b
                }
            ));
        };
        let mut error = None;
        for _ in 0..MAX_FAULT_PAGES {
            let page = match c.read_faults(object, FaultBatch::PAGE) {
                Ok(r) => r.page,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            log.dropped = page.dropped();
            if page.possibly_lost() > log.possibly_lost {
                log.possibly_lost = page.possibly_lost();
                host.line(format_args!(
                    "DMA_FAULT_LOST vm={name} possibly_lost={} (the IOMMU lost fault records without saying whose; some may be this VM's)",
                    log.possibly_lost
                ));
            }
            for r in page.records() {
                if let Some(b) = log.push(r) {
                    emit(host, b);
                }
            }
            if page.is_empty() || page.remaining() == 0 {
                break;
            }
        }
        if let Some(b) = log.flush() {
            emit(host, b);
        }
        error
    }

    fn check_time(&mut self) -> Action {
        if self.host.stop_requested() {
            return Action::Stop(StopReason::Requested);
        }
        let elapsed = self.host.now_ns().saturating_sub(self.started_ns);
        if elapsed >= self.time_limit_ms.saturating_mul(1_000_000) {
            Action::Stop(StopReason::TimeLimit {
                ms: self.time_limit_ms,
            })
        } else {
            Action::Yield
        }
    }

    fn console_bytes(&mut self, bytes: &[u8]) {
        self.work.charge(
            Work::ConsoleBytes,
            u32::try_from(bytes.len()).unwrap_or(u32::MAX),
        );
        let name = self.name;
        let host = &mut self.host;
        for &b in bytes {
            self.console
                .push(b, |l| host.line(format_args!("GUEST [{name}] {l}")));
        }
    }

    /// Hypercalls (guest ABI, [`abi`]): the function id is w0.
    fn hvc(&mut self, imm: u16, vcpu: &mut impl Vcpu) -> Action {
        if imm != abi::HVC_IMM {
            vcpu.set_reg(0, abi::RET_NOT_SUPPORTED);
            return Action::Resume;
        }
        match vcpu.reg(0) as u32 {
            abi::PSCI_VERSION => vcpu.set_reg(0, abi::PSCI_VERSION_1_0),
            abi::PSCI_SYSTEM_OFF => {
                self.exit_status = Some(0);
                return Action::Stop(StopReason::SystemOff);
            }
            abi::QVM_EXIT => {
                let status = vcpu.reg(1);
                self.exit_status = Some(status);
                return Action::Stop(StopReason::Exited { status });
            }
            abi::QVM_CONSOLE_WRITE => {
                let (gpa, len) = (vcpu.reg(1), vcpu.reg(2));
                let mut buf = [0u8; abi::CONSOLE_WRITE_MAX as usize];
                let ok = len <= abi::CONSOLE_WRITE_MAX
                    && self.ram.range().contains(gpa, len)
                    && buf
                        .get_mut(..len as usize)
                        .is_some_and(|b| self.ram.read(Gpa(gpa), b).is_ok());
                if ok {
                    self.console_bytes(buf.get(..len as usize).unwrap_or(&[]));
                    vcpu.set_reg(0, len);
                } else {
                    vcpu.set_reg(0, abi::RET_INVALID_PARAMETER);
                }
            }
            _ => vcpu.set_reg(0, abi::RET_NOT_SUPPORTED),
        }
        Action::Resume
    }

    fn data_abort(&mut self, gpa: Gpa, iss: u32, vcpu: &mut impl Vcpu) -> Action {
        let access = match mmio::Access::decode(iss) {
            Ok(a) => a,
            Err(why) => return Action::Stop(StopReason::Unemulatable { gpa, why }),
        };
        let value = if access.reg == 31 {
            0
        } else {
            access.store_value(vcpu.reg(access.reg))
        };
        let read = match mmio::target(gpa, access.size) {
            Target::Uart(off) if access.write => {
                if let Some(b) = mmio::uart_write(off, value) {
                    self.console_bytes(&[b]);
                }
                0
            }
            Target::Uart(off) => mmio::uart_read(off),
            Target::Ecam(off) if access.write => {
                self.work.charge(Work::EcamAccesses, 1);
                if let Some(ev) = self.vpci.write(off, access.size, value) {
                    if let Err(e) = self.on_bar_event(ev, vcpu) {
                        return Action::Stop(StopReason::Stage2(e));
                    }
                }
                0
            }
            Target::Ecam(off) => {
                self.work.charge(Work::EcamAccesses, 1);
                self.vpci.read(off, access.size)
            }
            Target::Nothing => {
                return Action::Stop(StopReason::OutsideDevices {
                    gpa,
                    size: access.size,
                    write: access.write,
                })
            }
        };
        if !access.write && access.reg != 31 {
            vcpu.set_reg(access.reg, access.load_value(read));
        }
        vcpu.set_pc(vcpu.pc().wrapping_add(4));
        Action::Resume
    }

    /// Brings the CPU stage 2 in line with the BARs: each BAR of a function that decodes
    /// memory is mapped at its guest address, no other.
    fn on_bar_event(
        &mut self,
        ev: vpci::BarEvent,
        vcpu: &mut impl Vcpu,
    ) -> Result<(), MapListError> {
        // Each event is host work: a stage-2 change with TLB maintenance, or a refusal line.
        self.work.charge(Work::Remaps, 1);
        if let vpci::BarEvent::Refused { device, bar, value } = ev {
            let name = self.name;
            self.host.line(format_args!(
                "VMM vm={name} refused BAR write device=00:{device:02x}.0 bar={bar} value={value:#010x}"
            ));
            return Ok(());
        }
        let mut want: heapless::Vec<(vpci::GuestBar, bool), 12> = heapless::Vec::new();
        for b in self.vpci.bars() {
            let _ = want.push(b);
        }
        let Some(table) = self.cpu.as_mut() else {
            return Ok(());
        };
        for (b, on) in want {
            let kind = RegionKind::Bar {
                device: b.device,
                bar: b.bar,
            };
            let current = self.map.regions().iter().find(|r| r.kind == kind).copied();
            let desired = on.then_some(b.gpa);
            if current.map(|r| r.gpa.start()) == desired {
                continue;
            }
            if let Some(old) = current {
                guest_map::unmap_cpu(table, &mut self.mem, &old)?;
                vcpu.invalidate_ipa(old.gpa.start().get(), old.gpa.len());
                table.reclaim(&mut self.mem);
                self.map.remove(kind);
            }
            if let Some(gpa) = desired {
                match self.map.add(gpa, b.host.hpa, b.host.size, kind) {
                    Ok(region) => {
                        if let Err(e) = guest_map::map_cpu(table, &mut self.mem, &region) {
                            self.map.remove(kind);
                            return Err(e);
                        }
                    }
                    // Two BARs placed on top of each other: this one stays unmapped and the
                    // guest's accesses to it stop the guest.
                    Err(e) => {
                        let name = self.name;
                        self.host.line(format_args!(
                            "VMM vm={name} BAR device=00:{:02x}.0 bar={} not mapped: {e}",
                            b.device, b.bar
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads every fault record of the VM's object back and logs it, destroys the object (its
    /// devices go back to deny), frees the CPU tables and reports.
    pub fn finish(mut self) -> Report {
        self.wind_down()
    }

    /// [`Vm::finish`], then hands back what the host gave the VM (its RAM, its pass-through
    /// functions, its manager connection, its CPU stage-2 memory), so the host can scrub the
    /// RAM and start the VM again in it.
    pub fn finish_returning(mut self) -> (Report, Returned<T, R, H, M>) {
        let report = self.wind_down();
        let returned = Returned {
            ram: self.ram,
            functions: self.vpci.into_hosts(),
            client: self.client,
            stage2_mem: self.mem,
        };
        (report, returned)
    }

    /// Quiesces the devices, reads the last faults, destroys the object and the CPU tables.
    fn wind_down(&mut self) -> Report {
        let name = self.name;
        let mut report = Report {
            exit_status: self.exit_status,
            stop: self.stop,
            faults: 0,
            dropped: 0,
            possibly_lost: 0,
            isolated: self.isolated,
            throttled: self.work.throttled(),
            cleanup_error: None,
        };
        {
            let host = &mut self.host;
            self.console
                .flush(|l| host.line(format_args!("GUEST [{name}] {l}")));
        }
        // The devices' DMA quiesced before the object goes (and with it the devices'
        // translations): bus mastering off, FLR where offered, the settle time.
        for (i, h) in self.vpci.hosts_mut().enumerate() {
            let q = self.host.quiesce(h);
            let device = self.devices.get(i).map(|d| d.host);
            self.host.line(format_args!(
                "QUIESCE vm={name} device={} bus_master={} flr={}",
                OrUnknown(device),
                if q == Quiesced::SkippedControl {
                    "on"
                } else {
                    "off"
                },
                q.tag()
            ));
        }
        report.cleanup_error = self.read_faults();
        report.faults = self.faults.records;
        report.dropped = self.faults.dropped;
        report.possibly_lost = self.faults.possibly_lost;
        if let (Some(c), Some(object)) = (self.client.as_mut(), self.object) {
            if let Err(e) = c.destroy_object(object) {
                report.cleanup_error.get_or_insert(e);
            }
            self.object = None;
        }
        if let Some(t) = self.cpu.take() {
            t.destroy(&mut self.mem);
        }
        let status = report.exit_status.map_or(-1i128, i128::from);
        let stop = report.stop.map_or("none", |r| r.tag());
        self.host.line(format_args!(
            "VMM vm={name} finished stop={stop} status={status} faults={} dropped={} possibly_lost={} isolated={} throttled={}",
            report.faults,
            report.dropped,
            report.possibly_lost,
            u8::from(report.isolated),
            report.throttled
        ));
        report
    }
}

/// A value or `unknown`, for records.
struct OrUnknown<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// Whether a RAM range overlaps a guest device window (console, PCI memory, ECAM).
fn overlaps_devices(ram: GpaRange) -> bool {
    [
        (abi::UART_BASE, 0x1000),
        (abi::PCI_MMIO_BASE, abi::PCI_MMIO_SIZE),
        (abi::ECAM_BASE, abi::ECAM_SIZE),
    ]
    .iter()
    .any(|&(b, l)| GpaRange::new(Gpa(b), l).is_some_and(|w| w.overlaps(&ram)))
}

#[cfg(test)]
mod tests;
