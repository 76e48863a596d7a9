//! The VMM's whole life on the host: a scripted vCPU, an in-process manager over the fake
//! IOMMU, a fake `edu`.

use super::*;
use crate::elf::tests::{image, Ph};
use crate::elf::ElfError;
use crate::guest_ram::OutsideRam;
use crate::mmio::DecodeError;
use crate::plan;
use crate::slice_work::WorkLimits;
use crate::vpci::tests::{FakeFunction, BAR0_HPA};
use core::time::Duration;
use iommu_core::fake::FakeMemory;
use iommu_core::{Access, Fault, FaultReason, Iova};
use iommu_core::{Direction, StreamId};
use smmuman_api::{ClientId, TransportError, MAX_MESSAGE};
use smmuman_server::fake::SharedFake;
use smmuman_server::{DeviceEntry, DeviceId, Grant, GrantKind, Manager, ManagerConfig, PhysRange};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::string::{String, ToString};
use std::vec::Vec;

const EDU: StreamId = StreamId(8);
const NIC: StreamId = StreamId(0x10);
const RAM_HPA: u64 = 0x4800_0000;
const RAM_LEN: u64 = 2 << 20;
const OTHER_RAM_HPA: u64 = 0x4a00_0000;
const MSG: &[u8] = b"hello from the guest\n";

// ---- the manager, in process ----

type Shared = Rc<RefCell<Manager<SharedFake>>>;

struct Direct(Shared, ClientId);

impl Transport for Direct {
    fn call(&mut self, request: &[u8], reply: &mut [u8]) -> Result<usize, TransportError> {
        if reply.len() < MAX_MESSAGE {
            return Err(TransportError::ReplyTooLong { len: MAX_MESSAGE });
        }
        Ok(self.0.borrow_mut().handle(self.1, request, reply))
    }
}

static DEVICES: [DeviceEntry; 2] = [
    DeviceEntry {
        id: DeviceId::Pci(Bdf {
            bus: 0,
            dev: 1,
            func: 0,
        }),
        sid: EDU,
        raw_sid_allowed: false,
    },
    DeviceEntry {
        id: DeviceId::Pci(Bdf {
            bus: 0,
            dev: 2,
            func: 0,
        }),
        sid: NIC,
        raw_sid_allowed: false,
    },
];

fn manager() -> (Shared, SharedFake) {
    let fake = SharedFake::default();
    let config = ManagerConfig {
        devices: &DEVICES,
        reserved: &[],
        iova_ranges: &[smmuman_api::IovaRange {
            first: Iova(0),
            last: Iova((1 << 40) - 1),
        }],
        page_sizes: 1 << 12 | 1 << 21 | 1 << 30,
        fault_log_depth: 32,
        max_mappings_per_object: 1024,
        max_mappings: 4096,
        clock: || Duration::from_micros(1_500_250),
    };
    let mut m = Manager::new(fake.clone(), &config).unwrap();
    // Client 1 is given 00:01.0 and client 2 00:02.0, each with its RAM.
    for (c, hpa, dev) in [(1, RAM_HPA, 1), (2, OTHER_RAM_HPA, 2)] {
        m.assign(
            ClientId(c),
            &[Grant {
                range: PhysRange {
                    start: PhysAddr(hpa),
                    len: RAM_LEN,
                },
                kind: GrantKind::Ram,
            }],
            &[DeviceSel::pci(Bdf {
                bus: 0,
                dev,
                func: 0,
            })],
        )
        .unwrap();
    }
    (Rc::new(RefCell::new(m)), fake)
}

fn client(m: &Shared, id: u32) -> Client<Direct> {
    Client::connect(Direct(m.clone(), ClientId(id))).unwrap()
}

// ---- the host ----

#[derive(Clone, Default)]
struct TestHost {
    lines: Rc<RefCell<Vec<String>>>,
    now: Rc<Cell<u64>>,
    stop: Rc<Cell<bool>>,
}

impl VmmHost for TestHost {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        self.lines.borrow_mut().push(args.to_string());
    }
    fn now_ns(&self) -> u64 {
        self.now.get()
    }
    fn yield_now(&mut self) {
        // Others run for a millisecond.
        self.now.set(self.now.get() + 1_000_000);
    }
    fn stop_requested(&self) -> bool {
        self.stop.get()
    }
}

impl TestHost {
    fn has(&self, want: &str) -> bool {
        self.lines.borrow().iter().any(|l| l.contains(want))
    }
    fn dump(&self) -> String {
        self.lines.borrow().join("\n")
    }
}

/// The VM's RAM, shared with the test.
#[derive(Clone)]
struct VecRam {
    range: GpaRange,
    bytes: Rc<RefCell<Vec<u8>>>,
}

impl VecRam {
    fn new(base: u64) -> Self {
        Self {
            range: GpaRange::new(Gpa(base), RAM_LEN).unwrap(),
            bytes: Rc::new(RefCell::new(vec![0xa5; RAM_LEN as usize])),
        }
    }
    fn at(&self, gpa: u64, len: usize) -> Vec<u8> {
        let off = (gpa - self.range.start().get()) as usize;
        self.bytes.borrow()[off..off + len].to_vec()
    }
}

impl GuestRam for VecRam {
    fn range(&self) -> GpaRange {
        self.range
    }
    fn write(&mut self, gpa: Gpa, bytes: &[u8]) -> Result<(), OutsideRam> {
        let mut b = self.bytes.borrow_mut();
        let mut s = crate::SliceRam::new(self.range.start(), &mut b).unwrap();
        s.write(gpa, bytes)
    }
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let mut b = self.bytes.borrow_mut();
        let s = crate::SliceRam::new(self.range.start(), &mut b).unwrap();
        s.read(gpa, buf)
    }
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), OutsideRam> {
        let mut b = self.bytes.borrow_mut();
        let mut s = crate::SliceRam::new(self.range.start(), &mut b).unwrap();
        s.zero(gpa, len)
    }
}

// ---- the guest: a script of exits ----

type Step = Box<dyn FnMut(&mut ScriptVcpu) -> Exit>;

#[derive(Default)]
struct ScriptVcpu {
    regs: [u64; 31],
    pc: u64,
    steps: VecDeque<Step>,
    invalidated: Vec<(u64, u64)>,
    /// Times the VMM started a new slice ([`Vcpu::next_slice`]).
    slices: u32,
}

impl Vcpu for ScriptVcpu {
    fn run(&mut self) -> Exit {
        match self.steps.pop_front() {
            Some(mut step) => step(self),
            // A guest that loops forever: only the timer gets the CPU back.
            None => Exit::Timer,
        }
    }
    fn reg(&self, n: u8) -> u64 {
        self.regs.get(usize::from(n)).copied().unwrap_or(0)
    }
    fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.regs.get_mut(usize::from(n)) {
            *r = value;
        }
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, pc: u64) {
        self.pc = pc;
    }
    fn invalidate_ipa(&mut self, ipa: u64, len: u64) {
        self.invalidated.push((ipa, len));
    }
    fn next_slice(&mut self) {
        self.slices += 1;
    }
}

impl ScriptVcpu {
    fn then(&mut self, step: impl FnMut(&mut ScriptVcpu) -> Exit + 'static) -> &mut Self {
        self.steps.push_back(Box::new(step));
        self
    }
    fn hvc(&mut self, fid: u32, x1: u64, x2: u64) -> &mut Self {
        self.then(move |v| {
            v.regs[0] = u64::from(fid);
            v.regs[1] = x1;
            v.regs[2] = x2;
            Exit::Hvc { imm: 0 }
        })
    }
    /// A store of `size` bytes of `value` from x9 (`STR w9/x9, [gpa]`).
    fn store(&mut self, gpa: u64, size: u8, value: u64) -> &mut Self {
        self.then(move |v| {
            v.regs[9] = value;
            Exit::DataAbort {
                ipa: gpa,
                iss: iss(size, 9, true),
                il32: true,
            }
        })
    }
    /// A load of `size` bytes into x10; the next step finds the value there.
    fn load(&mut self, gpa: u64, size: u8) -> &mut Self {
        self.then(move |_| Exit::DataAbort {
            ipa: gpa,
            iss: iss(size, 10, false),
            il32: true,
        })
    }
    /// Checks x10 (what the previous load left), then goes on with nothing (a WFI).
    fn expect_x10(&mut self, want: u64, what: &'static str) -> &mut Self {
        self.then(move |v| {
            assert_eq!(v.regs[10], want, "{what}");
            Exit::Wfx { wfe: false }
        })
    }
}

/// ISS of a data abort with a valid syndrome (Arm ARM D17.2.37): ISV, SAS, SRT, SF for 8
/// bytes, WnR, DFSC = translation fault level 3.
fn iss(size: u8, reg: u32, write: bool) -> u32 {
    let sas = size.trailing_zeros();
    (1 << 24)
        | (sas << 22)
        | (reg << 16)
        | if size == 8 { 1 << 15 } else { 0 }
        | if write { 1 << 6 } else { 0 }
        | 0b000111
}

fn ecam(dev: u64, reg: u64) -> u64 {
    abi::ECAM_BASE + (dev << 15) + reg
}

// ---- building a VM ----

fn guest_image(base: u64) -> Vec<u8> {
    let mut payload = vec![0xd5u8; 0x20];
    payload.extend_from_slice(MSG);
    image(
        base + 0x1000,
        &[
            Ph {
                kind: 1,
                flags: 5,
                offset: 0x100,
                paddr: base + 0x1000,
                filesz: 0x20,
                memsz: 0x20,
            },
            Ph {
                kind: 1,
                flags: 6,
                offset: 0x120,
                paddr: base + 0x3000,
                filesz: MSG.len() as u64,
                memsz: 0x1000,
            },
        ],
        &payload,
    )
}

fn plan_text(name: &str, extra: &str, bdf: &str) -> String {
    format!("[vm {name}]\nram 2M\npass pci {bdf}\nguest driver\nbootargs \"check=all\"\ntime-limit 50ms\n{extra}")
}

type TestVm<'p> = Vm<'p, Direct, VecRam, FakeFunction, FakeMemory, TestHost>;

/// VM `name` (its plan: [`plan_text`] with `extra`) passing `bdf` through, started with
/// client 1 of a new manager at [`RAM_HPA`]: the manager, its IOMMU and the started VM. The
/// plan is leaked (a test's few bytes) so the VM may borrow it.
fn started(name: &str, extra: &str, bdf: &str) -> (Shared, SharedFake, Started<'static>) {
    let (m, fake) = manager();
    let text: &'static str = Box::leak(plan_text(name, extra, bdf).into_boxed_str());
    let p: &'static plan::HostPlan<'static> = Box::leak(Box::new(plan::parse(text).unwrap()));
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    (m, fake, s)
}

struct Started<'p> {
    vm: Result<TestVm<'p>, StartError>,
    host: TestHost,
    ram: VecRam,
    edu: FakeFunction,
}

fn start<'p>(p: &plan::VmPlan<'p>, hpa: u64, client: Option<Client<Direct>>) -> Started<'p> {
    let host = TestHost::default();
    let gpa = guest_ram_range(p, PhysAddr(hpa)).unwrap().start().get();
    let ram = VecRam::new(gpa);
    let edu = FakeFunction::default();
    let mut functions = heapless::Vec::new();
    for _ in p.pass.iter() {
        let _ = functions.push(edu.clone());
    }
    let res = Resources {
        ram_hpa: PhysAddr(hpa),
        ram: ram.clone(),
        functions,
        client,
        stage2_mem: FakeMemory::default(),
        stage2_cfg: Stage2Config::widest_for_oas(44),
    };
    let vm = Vm::start(p, &guest_image(gpa), res, host.clone());
    Started { vm, host, ram, edu }
}

fn translate_cpu(vm: &TestVm<'_>, gpa: u64) -> Option<(u64, Access)> {
    let (t, mem) = vm.cpu_stage2().unwrap();
    t.translate(mem, Iova(gpa)).map(|t| (t.pa.get(), t.access))
}

// ---- the tests ----

#[test]
fn a_driver_like_guest_lives_its_whole_life() {
    let (m, fake, s) = started("vm1", "", "00:01.0");
    let mut vm = s.vm.unwrap_or_else(|e| panic!("{e}\n{}", s.host.dump()));
    assert!(
        s.host
            .has("VMM vm=vm1 started entry=0x0000000040001000 dtb=0x00000000401f0000"),
        "{}",
        s.host.dump()
    );
    assert!(s
        .host
        .has("VMM vm=vm1 device host=00:01.0 guest=00:01.0 sid=0x8"));
    assert_eq!(vm.devices()[0].sid, Some(EDU));

    // The image and the tree are in RAM.
    assert_eq!(s.ram.at(abi::RAM_BASE + 0x3000, MSG.len()), MSG);
    assert_eq!(
        s.ram.at(abi::RAM_BASE + 0x3000 + MSG.len() as u64, 8),
        [0; 8],
        "bss"
    );
    let dtb = s.ram.at(abi::RAM_BASE + RAM_LEN - abi::DTB_MAX, 2048);
    let fdt = fdt::Fdt::new(&dtb).unwrap();
    assert_eq!(fdt.chosen().bootargs(), Some("check=all"));

    // The SMMU and the CPU translate every RAM page alike (the manager's tables, through the
    // fake IOMMU, against our CPU table); the BAR is on neither yet (memory decoding off).
    let smmu = |gpa: u64| {
        fake.lock()
            .translate(EDU, Iova(gpa))
            .map(|(pa, _)| pa.get())
    };
    {
        let (t, mem) = vm.cpu_stage2().unwrap();
        assert_eq!(vm.guest_map().compare(t, mem, smmu), Ok(512 + 2));
    }
    assert_eq!(
        fake.lock().translate(EDU, Iova(abi::RAM_BASE)),
        Some((PhysAddr(RAM_HPA), Access::RW))
    );

    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    let msg = abi::RAM_BASE + 0x3000;
    let bar = abi::PCI_MMIO_BASE;
    let moved = abi::PCI_MMIO_BASE + 0x0800_0000;
    cpu.then(|v| {
        // Linux arm64 boot protocol: x0 = the tree, pc = e_entry.
        assert_eq!(v.regs[0], abi::RAM_BASE + RAM_LEN - abi::DTB_MAX);
        assert_eq!(v.pc, abi::RAM_BASE + 0x1000);
        v.regs[0] = u64::from(abi::PSCI_VERSION);
        Exit::Hvc { imm: 0 }
    })
    .then(|v| {
        assert_eq!(v.regs[0], abi::PSCI_VERSION_1_0);
        Exit::Wfx { wfe: true }
    })
    .hvc(abi::QVM_CONSOLE_WRITE, msg, MSG.len() as u64)
    .then(|v| {
        assert_eq!(v.regs[0], MSG.len() as u64);
        Exit::HostIrq
    })
    .store(abi::UART_BASE, 1, u64::from(b'o'))
    .store(abi::UART_BASE, 4, 0x100 | u64::from(b'k'))
    .store(abi::UART_BASE, 1, u64::from(b'\n'))
    .load(abi::UART_BASE + abi::UART_FR, 4)
    .expect_x10(u64::from(abi::UART_FR_IDLE), "UARTFR idle")
    // The PCI scan: slot 0 empty, slot 1 the edu.
    .load(ecam(0, 0), 4)
    .expect_x10(0xffff_ffff, "empty slot")
    .load(ecam(1, 0), 4)
    .expect_x10(0x11e8_1234, "edu's ids")
    // BAR0: size it, put it back, enable memory and bus mastering.
    .store(ecam(1, 0x10), 4, 0xffff_ffff)
    .load(ecam(1, 0x10), 4)
    .expect_x10(0xfff0_0000, "BAR0 size mask")
    .store(ecam(1, 0x10), 4, bar)
    .store(ecam(1, 4), 2, 0x6)
    .then(|_| Exit::Timer)
    // Move the BAR while memory decoding is on.
    .store(ecam(1, 0x10), 4, moved)
    .hvc(abi::QVM_EXIT, 0, 0);

    assert_eq!(vm.run(&mut cpu), StopReason::Exited { status: 0 });
    assert!(
        s.host.has("GUEST [vm1] hello from the guest"),
        "{}",
        s.host.dump()
    );
    assert!(s.host.has("GUEST [vm1] ok"));
    // Memory and bus mastering reached the edu, I/O never did.
    assert_eq!(s.edu.writes.borrow().last(), Some(&(4, 0x6)));
    // The BAR is in the CPU stage 2 at its new place only, as device memory, and the old
    // place was invalidated.
    assert_eq!(
        translate_cpu(&vm, moved + 0x80),
        Some((BAR0_HPA + 0x80, Access::DEVICE | Access::RW))
    );
    assert_eq!(translate_cpu(&vm, bar), None);
    assert_eq!(cpu.invalidated, [(bar, 1 << 20)]);
    // ...and never in the SMMU: the comparison covers the BAR's pages too now.
    {
        let (t, mem) = vm.cpu_stage2().unwrap();
        assert_eq!(
            vm.guest_map().compare(t, mem, smmu),
            Ok(512 + 2 + 256 + 2 + 4 + 2),
            "RAM, BAR0 and BAR2 with their neighbours"
        );
    }
    // pc advanced past every emulated access and WFx; HVCs leave it.
    assert_eq!(cpu.pc, abi::RAM_BASE + 0x1000 + 4 * 16);

    let report = vm.finish();
    assert_eq!(report.exit_status, Some(0));
    assert_eq!(report.stop, Some(StopReason::Exited { status: 0 }));
    assert_eq!(
        (report.faults, report.dropped, report.isolated),
        (0, 0, true)
    );
    assert_eq!(report.cleanup_error, None);
    assert!(s.host.has(
        "VMM vm=vm1 finished stop=exit status=0 faults=0 dropped=0 possibly_lost=0 isolated=1"
    ));
    // The object is gone: the edu reaches nothing, and its bus mastering is off.
    assert_eq!(fake.lock().translate(EDU, Iova(abi::RAM_BASE)), None);
    assert_eq!(m.borrow().object_count(), 0);
    assert_eq!(s.edu.writes.borrow().last(), Some(&(4, 0)));
}

fn fault(sid: StreamId, addr: u64, dir: Direction) -> Fault {
    Fault {
        sid,
        addr: Iova(addr),
        dir: Some(dir),
        reason: FaultReason::Translation,
        code: 0x10,
    }
}

#[test]
fn a_rogue_guests_faults_are_read_back_and_logged_per_vm() {
    let (m, fake) = manager();
    let text = format!(
        "{}{}",
        plan_text("rogue", "", "00:01.0"),
        plan_text("victim", "", "00:02.0")
    );
    let p = plan::parse(&text).unwrap();
    let r = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    let v = start(&p.vms[1], OTHER_RAM_HPA, Some(client(&m, 2)));
    let mut rogue = r.vm.unwrap();
    let victim = v.vm.unwrap();

    // The rogue's device reaches outside its RAM: at a GPA past it, at the other VM's RAM's
    // host address, at an SMMU-like frame. The IOMMU refuses each; its records land in the
    // rogue's ledger (and one from the victim's device in the victim's).
    let fake2 = fake.clone();
    let mut cpu = ScriptVcpu::default();
    rogue.prepare(&mut cpu);
    cpu.then(move |_| {
        let mut f = fake2.lock();
        f.inject_fault(fault(EDU, abi::RAM_BASE + RAM_LEN, Direction::Write));
        f.inject_fault(fault(EDU, OTHER_RAM_HPA, Direction::Read));
        f.inject_fault(fault(EDU, 0x0905_0000, Direction::Write));
        f.inject_fault(fault(NIC, 0x1234_5000, Direction::Read));
        Exit::Wfx { wfe: false }
    })
    .hvc(abi::QVM_EXIT, 3, 0);
    assert_eq!(rogue.run(&mut cpu), StopReason::Exited { status: 3 });
    // The SMMU never translated any of those addresses for the rogue's device.
    for a in [abi::RAM_BASE + RAM_LEN, OTHER_RAM_HPA, 0x0905_0000] {
        assert_eq!(fake.lock().translate(EDU, Iova(a)), None);
    }
    let report = rogue.finish();
    assert_eq!((report.faults, report.dropped), (3, 0), "{}", r.host.dump());
    assert_eq!(report.exit_status, Some(3));
    let lines = r.host.lines.borrow();
    let faults: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("DMA_FAULT"))
        .collect();
    assert_eq!(
        faults,
        [
            "DMA_FAULT vm=rogue device=00:01.0 sid=0x8 addr=0x0000000040200000 addr_last=0x0000000040200000 count=1 dir=write reason=translation time=1.500250s seq=1 seq_last=1",
            "DMA_FAULT vm=rogue device=00:01.0 sid=0x8 addr=0x000000004a000000 addr_last=0x000000004a000000 count=1 dir=read reason=translation time=1.500250s seq=2 seq_last=2",
            "DMA_FAULT vm=rogue device=00:01.0 sid=0x8 addr=0x0000000009050000 addr_last=0x0000000009050000 count=1 dir=write reason=translation time=1.500250s seq=3 seq_last=3",
        ]
    );
    drop(lines);
    assert!(r.host.has(
        "VMM vm=rogue finished stop=exit status=3 faults=3 dropped=0 possibly_lost=0 isolated=1"
    ));
    // The control: the victim's own record is in the victim's ledger, not lost.
    let report = victim.finish();
    assert_eq!(report.faults, 1);
    assert!(v
        .host
        .has("DMA_FAULT vm=victim device=00:02.0 sid=0x10 addr=0x0000000012345000 addr_last=0x0000000012345000 count=1 dir=read"));
}

#[test]
fn a_full_ledger_is_reported_with_its_dropped_count() {
    let (_m, fake, s) = started("vm1", "", "00:01.0");
    let vm = s.vm.unwrap();
    for i in 0..40 {
        fake.lock()
            .inject_fault(fault(EDU, 0x1000 * i, Direction::Write));
    }
    let report = vm.finish();
    assert_eq!((report.faults, report.dropped), (32, 8));
    assert!(s.host.has("faults=32 dropped=8"));
}

#[test]
fn a_4_kib_dma_into_a_full_ledger_is_one_line_with_the_exact_count() {
    // A refused 4 KiB DMA recorded per 4 bytes (QEMU's SMMUv3): 1,024 records reach the
    // manager at once, 32 times what the ledger keeps.
    let (_m, fake, s) = started("vm1", "", "00:01.0");
    let vm = s.vm.unwrap();
    for i in 0..1024 {
        fake.lock()
            .inject_fault(fault(EDU, 0x4800_0000 + 4 * i, Direction::Write));
    }
    let report = vm.finish();
    assert_eq!(
        (report.faults, report.dropped),
        (1024, 0),
        "{}",
        s.host.dump()
    );
    let lines = s.host.lines.borrow();
    let faults: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("DMA_FAULT"))
        .collect();
    assert_eq!(
        faults,
        ["DMA_FAULT vm=vm1 device=00:01.0 sid=0x8 addr=0x0000000048000000 addr_last=0x0000000048000ffc count=1024 dir=write reason=translation time=1.500250s seq=1 seq_last=1024"]
    );
    drop(lines);
    assert!(s.host.has("faults=1024 dropped=0 possibly_lost=0"));
}

#[test]
fn records_the_iommu_lost_are_announced_to_the_vm_that_may_miss_them() {
    let (_m, fake, s) = started("vm1", "", "00:01.0");
    let vm = s.vm.unwrap();
    // The IOMMU overflowed: whose records it lost, it does not say; vm1 has a device.
    fake.lock().inject_overflow();
    let report = vm.finish();
    assert_eq!((report.faults, report.possibly_lost), (0, 1));
    assert!(
        s.host.has("DMA_FAULT_LOST vm=vm1 possibly_lost=1"),
        "{}",
        s.host.dump()
    );
    assert!(s.host.has("faults=0 dropped=0 possibly_lost=1 isolated=1"));
}

#[test]
fn faults_are_read_back_while_the_guest_runs_so_the_ledger_does_not_fill() {
    let (_m, fake, s) = started("vm1", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    // Two bursts of 30 records (more than the 32-record ledger holds together), each
    // followed by a time-slice exit, as a rogue guest's DMAs are.
    for burst in 0..2u64 {
        let f = fake.clone();
        cpu.then(move |_| {
            for i in 0..30 {
                f.lock().inject_fault(fault(
                    EDU,
                    0x4800_0000 + burst * 0x1000 + 4 * i,
                    Direction::Write,
                ));
            }
            Exit::Timer
        });
    }
    cpu.hvc(abi::QVM_EXIT, 0, 0);
    assert_eq!(vm.run(&mut cpu), StopReason::Exited { status: 0 });
    let report = vm.finish();
    // Control for the ledger size: the same 60 records read only at the end lose 28
    // (a_full_ledger_is_reported_with_its_dropped_count).
    assert_eq!(
        (report.faults, report.dropped),
        (60, 0),
        "{}",
        s.host.dump()
    );
    assert!(s
        .host
        .has("addr=0x0000000048000000 addr_last=0x0000000048000074 count=30 dir=write"));
    assert!(s
        .host
        .has("addr=0x0000000048001000 addr_last=0x0000000048001074 count=30 dir=write"));
}

#[test]
fn without_a_manager_a_non_unity_vm_is_refused() {
    let text = plan_text("vm1", "", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let s = start(&p.vms[0], RAM_HPA, None);
    let e = s.vm.unwrap_err();
    assert_eq!(
        e,
        StartError::Refused {
            device: DeviceSel::pci(Bdf {
                bus: 0,
                dev: 1,
                func: 0
            }),
            problem: RuleProblem::NoManager,
            problems: 1
        }
    );
    assert!(s.host.has("VMM vm=vm1 refusing to start VM 'vm1': pass-through DMA device '00:01.0' (pci 00:01.0) needs the smmuman manager, which is not running"), "{}", s.host.dump());
    assert!(!s.host.has("started"));
    // Nothing of the guest was loaded.
    assert!(s.ram.bytes.borrow().iter().all(|&b| b == 0xa5));
}

#[test]
fn without_a_manager_a_unity_vm_starts_with_a_loud_warning() {
    let text = plan_text("u", "unity\n", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let s = start(&p.vms[0], RAM_HPA, None);
    let mut vm = s.vm.unwrap_or_else(|e| panic!("{e}\n{}", s.host.dump()));
    assert!(
        s.host
            .has("VMM vm=u WARNING: VM 'u' is unity-mapped and starts WITHOUT DMA ISOLATION"),
        "{}",
        s.host.dump()
    );
    assert!(s.host.has("isolated=0"));
    assert_eq!(vm.object(), None);
    // GPA == HPA on the CPU side.
    assert_eq!(
        translate_cpu(&vm, RAM_HPA + 0x5000).map(|t| t.0),
        Some(RAM_HPA + 0x5000)
    );
    assert_eq!(vm.entry().0, Gpa(RAM_HPA + 0x1000));
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    cpu.hvc(abi::PSCI_SYSTEM_OFF, 0, 0);
    assert_eq!(vm.run(&mut cpu), StopReason::SystemOff);
    let report = vm.finish();
    assert_eq!((report.exit_status, report.isolated), (Some(0), false));
}

#[test]
fn with_a_manager_a_unity_vm_is_isolated_with_iova_equal_to_pa() {
    let (_m, fake, s) = started("u", "unity\n", "00:01.0");
    let vm = s.vm.unwrap();
    assert!(!s.host.has("WARNING"));
    assert_eq!(
        fake.lock().translate(EDU, Iova(RAM_HPA + 0x2000)),
        Some((PhysAddr(RAM_HPA + 0x2000), Access::RW))
    );
    let smmu = |gpa: u64| {
        fake.lock()
            .translate(EDU, Iova(gpa))
            .map(|(pa, _)| pa.get())
    };
    let (t, mem) = vm.cpu_stage2().unwrap();
    assert_eq!(vm.guest_map().compare(t, mem, smmu), Ok(514));
    vm.finish();
}

#[test]
fn a_device_the_manager_does_not_know_is_refused() {
    let (m, _, s) = started("vm1", "", "00:05.0");
    assert!(matches!(
        s.vm,
        Err(StartError::Refused {
            problem: RuleProblem::UnknownDevice,
            ..
        })
    ));
    assert!(
        s.host
            .has("smmuman does not know pass-through DMA device '00:05.0'"),
        "{}",
        s.host.dump()
    );
    assert_eq!(m.borrow().object_count(), 0);
    // A unity VM with the same device reports it and starts anyway, unisolated.
    let text = plan_text("vm1", "unity\n", "00:05.0");
    let p = plan::parse(&text).unwrap();
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    assert!(s.vm.is_ok());
    assert!(s.host.has("WARNING: VM 'vm1' is unity-mapped"));
    assert_eq!(m.borrow().object_count(), 0);
}

#[test]
fn ram_outside_the_assignment_is_refused_by_the_manager_and_undone() {
    let (m, _) = manager();
    let text = plan_text("vm1", "", "00:01.0");
    let p = plan::parse(&text).unwrap();
    // Client 1 is assigned RAM_HPA; the host hands it the other VM's RAM by mistake.
    let s = start(&p.vms[0], OTHER_RAM_HPA, Some(client(&m, 1)));
    let e = s.vm.unwrap_err();
    assert!(
        matches!(
            e,
            StartError::Manager {
                step: "map_batch",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(m.borrow().object_count(), 0, "the object was destroyed");
    assert!(s.host.has("VMM vm=vm1 refused: smmuman refused map_batch"));
}

#[test]
fn a_unity_vm_may_not_overlap_the_device_windows() {
    let text = plan_text("u", "unity\n", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let s = start(&p.vms[0], abi::ECAM_BASE, None);
    assert!(matches!(s.vm, Err(StartError::UnityOverlap { .. })));
}

#[test]
fn the_time_limit_stops_a_looping_guest() {
    let (_m, _, s) = started("loop", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    // The control: before the limit a timer exit only yields.
    assert_eq!(vm.handle(Exit::Timer, &mut cpu), Action::Yield);
    // The script is empty: the guest loops and only the timer gets the CPU back.
    assert_eq!(vm.run(&mut cpu), StopReason::TimeLimit { ms: 50 });
    let elapsed = s.host.now.get();
    assert!((50_000_000..=51_000_000).contains(&elapsed), "{elapsed}");
    assert!(s.host.has("VMM vm=loop stopped reason=time-limit detail=\"the guest ran past its time limit of 50 ms\""));
    let report = vm.finish();
    assert_eq!(report.exit_status, None);
    assert_eq!(report.stop, Some(StopReason::TimeLimit { ms: 50 }));
}

#[test]
fn the_hosts_stop_request_stops_the_guest_then_its_device_is_quiesced_before_the_object_goes() {
    let (_m, _, s) = started("loop", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    // The control: not asked, a timer exit only yields.
    assert_eq!(vm.handle(Exit::Timer, &mut cpu), Action::Yield);
    s.host.stop.set(true);
    assert_eq!(vm.run(&mut cpu), StopReason::Requested);
    assert!(s.host.has("VMM vm=loop stopped reason=requested"));
    let before = s.host.now.get();
    let (report, back) = vm.finish_returning();
    assert_eq!(report.stop, Some(StopReason::Requested));
    // Bus mastering off and, the function offering no FLR, 100 ms waited, before the object
    // was destroyed (`finished`).
    let lines = s.host.lines.borrow();
    let quiesce = lines
        .iter()
        .position(|l| l == "QUIESCE vm=loop device=00:01.0 bus_master=off flr=not-offered");
    let finished = lines
        .iter()
        .position(|l| l.starts_with("VMM vm=loop finished"));
    assert!(quiesce.is_some() && quiesce < finished, "{lines:?}");
    assert!(s.host.now.get() - before >= 100_000_000);
    assert_eq!(back.functions.len(), 1, "the function is handed back");
    assert!(back.client.is_some(), "so is the connection");
}

#[test]
fn an_access_outside_ram_and_devices_stops_the_guest_naming_its_gpa() {
    let (_m, _, s) = started("vm1", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    // The control: the same store to the console page is emulated.
    cpu.store(abi::UART_BASE, 4, u64::from(b'x'))
        .store(0x5000_0000, 4, 0xdead)
        .hvc(abi::QVM_EXIT, 0, 0);
    let r = vm.run(&mut cpu);
    assert_eq!(
        r,
        StopReason::OutsideDevices {
            gpa: Gpa(0x5000_0000),
            size: 4,
            write: true
        }
    );
    assert_eq!(
        r.to_string(),
        "guest wrote 4 bytes at GPA 0x0000000050000000 outside its RAM and devices"
    );
    // The partial console line is flushed when the guest stops.
    assert!(s.host.has("GUEST [vm1] x"));
    assert!(s.host.has(
        "VMM vm=vm1 stopped reason=outside detail=\"guest wrote 4 bytes at GPA 0x0000000050000000"
    ));
    // A stopped guest stays stopped.
    assert_eq!(vm.handle(Exit::Timer, &mut cpu), Action::Stop(r));
    // A BAR whose memory decoding is off is not mapped either: touching it stops the guest.
    assert_eq!(translate_cpu(&vm, abi::PCI_MMIO_BASE), None);
    vm.finish();
}

#[test]
fn other_stops_and_refusals() {
    let (m, _) = manager();
    let text = plan_text("vm1", "", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    let pc = cpu.pc;
    // SMC: NOT_SUPPORTED, pc past it.
    assert_eq!(vm.handle(Exit::Smc { imm: 0 }, &mut cpu), Action::Resume);
    assert_eq!((cpu.regs[0], cpu.pc), (abi::RET_NOT_SUPPORTED, pc + 4));
    // Unknown hypercalls, and HVC with another immediate.
    cpu.regs[0] = 0xc600_00ff;
    assert_eq!(vm.handle(Exit::Hvc { imm: 0 }, &mut cpu), Action::Resume);
    assert_eq!(cpu.regs[0], abi::RET_NOT_SUPPORTED);
    cpu.regs[0] = u64::from(abi::PSCI_VERSION);
    assert_eq!(vm.handle(Exit::Hvc { imm: 7 }, &mut cpu), Action::Resume);
    assert_eq!(cpu.regs[0], abi::RET_NOT_SUPPORTED);
    // Console writes: outside RAM, straddling its end, too long are refused; the control
    // inside RAM is written.
    let end = abi::RAM_BASE + RAM_LEN;
    for (gpa, len) in [
        (0x1000, 4),
        (end - 2, 4),
        (abi::RAM_BASE, 257),
        (u64::MAX, 2),
    ] {
        cpu.regs[..3].copy_from_slice(&[u64::from(abi::QVM_CONSOLE_WRITE), gpa, len]);
        assert_eq!(vm.handle(Exit::Hvc { imm: 0 }, &mut cpu), Action::Resume);
        assert_eq!(cpu.regs[0], abi::RET_INVALID_PARAMETER, "{gpa:#x}+{len}");
    }
    cpu.regs[..3].copy_from_slice(&[u64::from(abi::QVM_CONSOLE_WRITE), abi::RAM_BASE + 0x3000, 5]);
    vm.handle(Exit::Hvc { imm: 0 }, &mut cpu);
    assert_eq!(cpu.regs[0], 5);
    // ISV = 0: stop, saying why.
    let a = vm.handle(
        Exit::DataAbort {
            ipa: abi::UART_BASE,
            iss: 0b000111,
            il32: true,
        },
        &mut cpu,
    );
    assert_eq!(
        a,
        Action::Stop(StopReason::Unemulatable {
            gpa: Gpa(abi::UART_BASE),
            why: DecodeError::NoSyndrome
        })
    );
    vm.finish();
    assert!(s.host.has("GUEST [vm1] hello"));

    // An instruction abort and an unexpected exception stop the guest.
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    let mut vm = s.vm.unwrap();
    assert_eq!(
        vm.handle(Exit::InstructionAbort { ipa: 0x10, iss: 0 }, &mut cpu),
        Action::Stop(StopReason::InstructionAbort { gpa: Gpa(0x10) })
    );
    vm.finish();
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    let mut vm = s.vm.unwrap();
    let a = vm.handle(
        Exit::Other {
            ec: 0x18,
            iss: 0x1234,
            far: 0,
        },
        &mut cpu,
    );
    assert_eq!(
        a,
        Action::Stop(StopReason::Exception {
            ec: 0x18,
            iss: 0x1234,
            far: 0
        })
    );
    vm.finish();
    assert!(s
        .host
        .has("reason=exception detail=\"unexpected guest exception: EC 0x18 ISS 0x0001234"));
    // A trapped system register access nobody emulates: the stop names the register from the
    // syndrome (MSR CNTP_CTL_EL0, x3: Op0 3, Op1 3, CRn 14, CRm 2, Op2 1), not a stale FAR.
    let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
    let mut vm = s.vm.unwrap();
    let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | (2 << 1);
    let access = crate::sysreg::SysRegAccess::from_iss(iss);
    assert_eq!(
        vm.handle(Exit::SysReg { access }, &mut cpu),
        Action::Stop(StopReason::SysReg { access })
    );
    vm.finish();
    assert!(s.host.has(
        "reason=sysreg detail=\"trapped system register access nobody emulates: msr CNTP_CTL_EL0, x3 (op0=3 op1=3 crn=14 crm=2 op2=1 rt=3 dir=write)\""
    ));
}

#[test]
fn a_bad_image_is_refused_and_the_object_undone() {
    let (m, _) = manager();
    let text = plan_text("vm1", "", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let host = TestHost::default();
    let res = Resources {
        ram_hpa: PhysAddr(RAM_HPA),
        ram: VecRam::new(abi::RAM_BASE),
        functions: heapless::Vec::from_slice(&[FakeFunction::default()])
            .ok()
            .unwrap(),
        client: Some(client(&m, 1)),
        stage2_mem: FakeMemory::default(),
        stage2_cfg: Stage2Config::widest_for_oas(44),
    };
    let e = TestVm::start(&p.vms[0], b"not an elf", res, host.clone()).unwrap_err();
    assert!(matches!(e, StartError::Elf(ElfError::TooShort { len: 10 })));
    assert!(host.has("VMM vm=vm1 refused: guest image: ELF image of 10 bytes"));
    assert_eq!(m.borrow().object_count(), 0);
}

#[test]
fn random_exits_never_panic_and_end_in_a_typed_stop() {
    let (m, _) = manager();
    let text = plan_text("fuzz", "", "00:01.0");
    let p = plan::parse(&text).unwrap();
    let mut rng = crate::plan::tests::Rng(0x5eed);
    let interesting = [
        abi::UART_BASE,
        abi::UART_BASE + abi::UART_FR,
        abi::ECAM_BASE,
        abi::ECAM_BASE + (1 << 15),
        abi::ECAM_BASE + (1 << 15) + 4,
        abi::ECAM_BASE + (1 << 15) + 0x10,
        abi::ECAM_BASE + (1 << 15) + 0x18,
        abi::ECAM_BASE + (1 << 15) + 0x1c,
        abi::PCI_MMIO_BASE,
        abi::RAM_BASE,
        u64::MAX,
    ];
    let fids = [
        abi::PSCI_VERSION,
        abi::QVM_CONSOLE_WRITE,
        abi::QVM_CONSOLE_WRITE,
        0x1234,
        abi::PSCI_SYSTEM_OFF,
        abi::QVM_EXIT,
    ];
    for round in 0..200 {
        let s = start(&p.vms[0], RAM_HPA, Some(client(&m, 1)));
        let mut vm = s.vm.unwrap();
        let mut cpu = ScriptVcpu::default();
        vm.prepare(&mut cpu);
        let mut stopped = None;
        for _ in 0..500 {
            for r in cpu.regs.iter_mut() {
                *r = rng.next();
            }
            let pick =
                |rng: &mut crate::plan::tests::Rng, n: usize| (rng.next() % n as u64) as usize;
            let exit = match rng.next() % 8 {
                0 => {
                    cpu.regs[0] = u64::from(fids[pick(&mut rng, fids.len())]);
                    cpu.regs[2] %= 300;
                    Exit::Hvc {
                        imm: (rng.next() % 2) as u16,
                    }
                }
                1 => Exit::Smc { imm: 0 },
                2..=5 => Exit::DataAbort {
                    ipa: interesting[pick(&mut rng, interesting.len())]
                        .wrapping_add(rng.next() % 16),
                    iss: (rng.next() as u32) | (1 << 24),
                    il32: true,
                },
                6 => Exit::Wfx { wfe: false },
                _ => Exit::Timer,
            };
            if let Action::Stop(r) = vm.handle(exit, &mut cpu) {
                let _ = r.to_string();
                stopped = Some(r);
                break;
            }
        }
        // Memory decoding on or off, the CPU stage 2 still agrees with the list.
        let (t, mem) = vm.cpu_stage2().unwrap();
        for region in vm.guest_map().regions() {
            let g = region.gpa.start().get();
            assert_eq!(
                t.translate(mem, Iova(g)).map(|x| x.pa),
                Some(region.hpa),
                "round {round}"
            );
        }
        let report = vm.finish();
        assert_eq!(report.stop, stopped);
        assert_eq!(m.borrow().object_count(), 0);
    }
}

/// Handles `exit` (made fresh by `make` each time) until the VMM stops resuming; returns how
/// many were handled, the last one included.
fn flood_until_yield(
    vm: &mut TestVm<'_>,
    cpu: &mut ScriptVcpu,
    max: u32,
    mut make: impl FnMut(&mut ScriptVcpu, u32) -> Exit,
) -> (u32, Action) {
    for n in 1..=max {
        let exit = make(cpu, n);
        let a = vm.handle(exit, cpu);
        if a != Action::Resume {
            return (n, a);
        }
    }
    (max, Action::Resume)
}

#[test]
fn a_guest_that_floods_its_host_with_work_is_descheduled_at_each_bound() {
    let (_m, _, s) = started("flood", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    let limits = vm.slice_work().limits();
    assert_eq!(limits, WorkLimits::DEFAULT);
    let hvc = |cpu: &mut ScriptVcpu, fid: u32, x1: u64, x2: u64| {
        cpu.regs[0] = u64::from(fid);
        cpu.regs[1] = x1;
        cpu.regs[2] = x2;
        Exit::Hvc { imm: 0 }
    };
    let load = |cpu: &mut ScriptVcpu, gpa: u64| {
        cpu.regs[10] = 0;
        Exit::DataAbort {
            ipa: gpa,
            iss: iss(4, 10, false),
            il32: true,
        }
    };
    let store = |cpu: &mut ScriptVcpu, gpa: u64, value: u64| {
        cpu.regs[9] = value;
        Exit::DataAbort {
            ipa: gpa,
            iss: iss(4, 9, true),
            il32: true,
        }
    };
    // Hypercalls: the one that reaches the bound gives the CPU away.
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, _| {
        hvc(c, abi::PSCI_VERSION, 0, 0)
    });
    assert_eq!((n, a), (limits.hypercalls, Action::Yield));
    // Console bytes: four full writes of 256 bytes reach 1024.
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, _| {
        hvc(c, abi::QVM_CONSOLE_WRITE, abi::RAM_BASE + 0x3000, 256)
    });
    assert_eq!(
        (n, a),
        (limits.console_bytes / 256, Action::Yield),
        "{}",
        s.host.dump()
    );
    // The same through the UART, a byte per store.
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, _| {
        store(c, abi::UART_BASE + abi::UART_DR, u64::from(b'x'))
    });
    assert_eq!((n, a), (limits.console_bytes, Action::Yield));
    // ECAM sweeps: reads of every slot's identity.
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, i| {
        load(c, ecam(u64::from(i % 32), 0))
    });
    assert_eq!((n, a), (limits.ecam_accesses, Action::Yield));
    // BAR moves: memory decoding on, then BAR 0 back and forth in the window (each a CPU
    // stage-2 unmap, map and TLB invalidation).
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, i| match i {
        1 => store(c, ecam(1, 4), 2),
        _ => store(
            c,
            ecam(1, 0x10),
            abi::PCI_MMIO_BASE + (4 << 20) + u64::from(i % 2) * (1 << 20),
        ),
    });
    // The COMMAND write maps BAR 0 (one event), each BAR write moves it (one more).
    assert_eq!((n, a), (limits.remaps, Action::Yield), "{}", s.host.dump());
    assert!(cpu.invalidated.len() >= limits.remaps as usize - 2);
    // Exits of any kind: stores to the UART's flag register (ignored) count only as exits.
    let (n, a) = flood_until_yield(&mut vm, &mut cpu, 100_000, |c, _| {
        store(c, abi::UART_BASE + abi::UART_FR, 0)
    });
    assert_eq!((n, a), (limits.exits, Action::Yield));
    assert_eq!(vm.slice_work().throttled(), 6);
    // `run` starts a new slice after each such yield: 600 hypercalls take three slices.
    for _ in 0..600 {
        cpu.hvc(abi::PSCI_VERSION, 0, 0);
    }
    cpu.hvc(abi::QVM_EXIT, 0, 0);
    let before = cpu.slices;
    assert_eq!(vm.run(&mut cpu), StopReason::Exited { status: 0 });
    assert_eq!(cpu.slices - before, 600 / limits.hypercalls);
    let report = vm.finish();
    assert_eq!(report.throttled, 6 + u64::from(600 / limits.hypercalls));
    assert!(s.host.has("throttled=8"), "{}", s.host.dump());
}

/// The control: without bounds (`WorkLimits::UNBOUNDED`, the test image's old accounting)
/// the same flood is resumed every time and never starts a new slice.
#[test]
fn without_bounds_the_same_flood_keeps_the_cpu() {
    let (_m, _, s) = started("flood", "", "00:01.0");
    let mut vm = s.vm.unwrap();
    vm.set_work_limits(WorkLimits::UNBOUNDED);
    let mut cpu = ScriptVcpu::default();
    vm.prepare(&mut cpu);
    for _ in 0..10_000 {
        cpu.hvc(abi::QVM_CONSOLE_WRITE, abi::RAM_BASE + 0x3000, 256);
    }
    cpu.hvc(abi::QVM_EXIT, 0, 0);
    assert_eq!(vm.run(&mut cpu), StopReason::Exited { status: 0 });
    assert_eq!(cpu.slices, 0);
    assert_eq!(vm.finish().throttled, 0);
}
