//! The EL2 world switch: one [`El2Vcpu`] per guest CPU, implementing `qvm::vcpu::Vcpu`.
//!
//! `run` loads the guest's EL1 system registers, the state each VM owns besides them (the
//! virtual timer, the GIC virtual CPU interface's ICH_VMCR_EL2: `Owned`), its stage 2
//! (VTTBR_EL2, VTCR_EL2) and its traps (HCR_EL2, MDCR_EL2, CPTR_EL2: `Traps`), arms the EL2
//! physical timer for the rest of the VM's time slice (a deadline, [`SliceAccounting`]: the
//! host's work for the VM's exits counts against it), and calls `qvm_vcpu_enter`, which saves
//! the host's callee-saved registers in the `Frame`, loads every guest register and ERETs to
//! EL1. Any exception from the guest comes through one of the four lower-EL AArch64 vectors
//! (`exceptions.rs`), which jump to `qvm_guest_exit`: it saves every guest register and the
//! syndrome registers in the frame (found through TPIDR_EL2), restores the host's registers and
//! SP_EL0, and ERETs back to EL2t right after the call, as if `qvm_vcpu_enter` had returned.
//! A trapped system register access the world switch answers itself (ID registers, PMU, debug,
//! RAS, set/way: [`crate::guest_sysreg`]) is emulated and the guest re-entered within
//! the same slice. Otherwise `run` stops the timer, saves the EL1 registers and the owned
//! state, disarms the guest's virtual timer, restores the host's traps and decodes the exit
//! ([`crate::guest_exit::decode`]). Which register is switched, trapped or reset, and
//! why: docs/world-switch.md.
//!
//! The host runs on SP_EL0 (EL2t); while a guest runs, SP_EL0 is the guest's, so the switch
//! happens on SP_EL2 (the exception stack, empty at that point).

use super::cpu_features::{self, CpuFeatures};
use crate::guest_exit::{self, SavedExit};
use crate::guest_sysreg::{self, Emulation, GuestIds, SetWayOp};
use core::arch::global_asm;
use core::mem::offset_of;

/// Everything of the guest the exit path saves, and the host registers it restores.
#[repr(C, align(16))]
struct Frame {
    /// x0..x30 of the guest.
    x: [u64; 31],
    /// The guest's SP_EL0.
    sp_el0: u64,
    /// Where the guest resumes (ELR_EL2) and its PSTATE (SPSR_EL2).
    pc: u64,
    spsr: u64,
    fpsr: u64,
    fpcr: u64,
    /// q0..q31 of the guest.
    q: [u128; 32],
    /// The host's x19..x30, SP and d8..d15 (AAPCS64 callee-saved).
    host_x: [u64; 12],
    host_sp: u64,
    host_d: [u64; 8],
    /// What the exit path saved.
    vector: u64,
    esr: u64,
    far: u64,
    hpfar: u64,
}

// The assembly below uses these offsets.
const _: () = {
    assert!(offset_of!(Frame, sp_el0) == 248);
    assert!(offset_of!(Frame, pc) == 256);
    assert!(offset_of!(Frame, fpsr) == 272);
    assert!(offset_of!(Frame, q) == 288);
    assert!(offset_of!(Frame, host_x) == 800);
    assert!(offset_of!(Frame, host_sp) == 896);
    assert!(offset_of!(Frame, host_d) == 904);
    assert!(offset_of!(Frame, vector) == 968);
    assert!(offset_of!(Frame, esr) == 976);
    assert!(offset_of!(Frame, hpfar) == 992);
};

global_asm!(
    r#"
    .section .text.vcpu, "ax"
    .global qvm_vcpu_enter
qvm_vcpu_enter:
    // x0 = the frame, x10 = its host part (LDP/STP reach only 504 bytes).
    // Save the host's callee-saved registers and stack pointer.
    add     x10, x0, #800
    stp     x19, x20, [x10, #0]
    stp     x21, x22, [x10, #16]
    stp     x23, x24, [x10, #32]
    stp     x25, x26, [x10, #48]
    stp     x27, x28, [x10, #64]
    stp     x29, x30, [x10, #80]
    mov     x9, sp
    str     x9, [x0, #896]
    stp     d8, d9, [x10, #104]
    stp     d10, d11, [x10, #120]
    stp     d12, d13, [x10, #136]
    stp     d14, d15, [x10, #152]
    msr     tpidr_el2, x0
    // From here SP_EL0 is the guest's: run on SP_EL2.
    msr     spsel, #1
    ldr     x9, [x0, #248]
    msr     sp_el0, x9
    ldp     x9, x10, [x0, #256]
    msr     elr_el2, x9
    msr     spsr_el2, x10
    ldp     x9, x10, [x0, #272]
    msr     fpsr, x9
    msr     fpcr, x10
    ldp     q0, q1, [x0, #288]
    ldp     q2, q3, [x0, #320]
    ldp     q4, q5, [x0, #352]
    ldp     q6, q7, [x0, #384]
    ldp     q8, q9, [x0, #416]
    ldp     q10, q11, [x0, #448]
    ldp     q12, q13, [x0, #480]
    ldp     q14, q15, [x0, #512]
    ldp     q16, q17, [x0, #544]
    ldp     q18, q19, [x0, #576]
    ldp     q20, q21, [x0, #608]
    ldp     q22, q23, [x0, #640]
    ldp     q24, q25, [x0, #672]
    ldp     q26, q27, [x0, #704]
    ldp     q28, q29, [x0, #736]
    ldp     q30, q31, [x0, #768]
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

    // Entered from a lower-EL vector on SP_EL2 with the guest's x0/x1 pushed and x1 = the
    // vector's index.
    .global qvm_guest_exit
qvm_guest_exit:
    mrs     x0, tpidr_el2
    str     x1, [x0, #968]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x9, sp_el0
    str     x9, [x0, #248]
    mrs     x9, elr_el2
    mrs     x10, spsr_el2
    stp     x9, x10, [x0, #256]
    mrs     x9, fpsr
    mrs     x10, fpcr
    stp     x9, x10, [x0, #272]
    stp     q0, q1, [x0, #288]
    stp     q2, q3, [x0, #320]
    stp     q4, q5, [x0, #352]
    stp     q6, q7, [x0, #384]
    stp     q8, q9, [x0, #416]
    stp     q10, q11, [x0, #448]
    stp     q12, q13, [x0, #480]
    stp     q14, q15, [x0, #512]
    stp     q16, q17, [x0, #544]
    stp     q18, q19, [x0, #576]
    stp     q20, q21, [x0, #608]
    stp     q22, q23, [x0, #640]
    stp     q24, q25, [x0, #672]
    stp     q26, q27, [x0, #704]
    stp     q28, q29, [x0, #736]
    stp     q30, q31, [x0, #768]
    mrs     x9, esr_el2
    mrs     x10, far_el2
    str     x9, [x0, #976]
    str     x10, [x0, #984]
    mrs     x9, hpfar_el2
    str     x9, [x0, #992]
    // The host again: its stack pointer (SP_EL0), callee-saved registers, default FPCR.
    add     x10, x0, #800
    ldr     x9, [x0, #896]
    msr     sp_el0, x9
    ldp     x19, x20, [x10, #0]
    ldp     x21, x22, [x10, #16]
    ldp     x23, x24, [x10, #32]
    ldp     x25, x26, [x10, #48]
    ldp     x27, x28, [x10, #64]
    ldp     x29, x30, [x10, #80]
    ldp     d8, d9, [x10, #104]
    ldp     d10, d11, [x10, #120]
    ldp     d12, d13, [x10, #136]
    ldp     d14, d15, [x10, #152]
    msr     fpcr, xzr
    // Return to the caller of qvm_vcpu_enter at EL2t (SP_EL0), DAIF masked (SPSR.M = 0b1000).
    msr     elr_el2, x30
    mov     x9, #0x3c8
    msr     spsr_el2, x9
    eret
"#
);

unsafe extern "C" {
    fn qvm_vcpu_enter(frame: *mut Frame);
}

/// Reads system register `$name`.
macro_rules! mrs {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1 or EL2 system register at EL2 has no side effect.
        unsafe {
            core::arch::asm!(concat!("mrs {v}, ", $name), v = out(reg) v, options(nomem, nostack))
        };
        v
    }};
}

/// Writes system register `$name`.
macro_rules! msr {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the callers write EL1/EL0 registers only guests use (their EL1 registers,
        // virtual timer, MDSCR_EL1, ICH_VMCR_EL2), or the EL2 registers that configure the
        // guest's world with values from `guest_exit`, restoring the host's after the exit.
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {v}"), v = in(reg) v, options(nostack))
        };
    }};
}

/// Saves (`save`) or loads the guest's EL1 registers, one field per register.
macro_rules! el1_registers {
    ($($field:ident = $reg:literal),* $(,)?) => {
        /// The guest's EL1 system registers, swapped at every entry and exit (only guests run
        /// at EL1; two guests time-share the CPU).
        #[derive(Clone, Copy, Default)]
        struct El1Regs {
            $($field: u64,)*
        }

        impl El1Regs {
            fn save(&mut self) {
                $(self.$field = mrs!($reg);)*
            }

            fn load(&self) {
                $(msr!($reg, self.$field);)*
            }
        }
    };
}

el1_registers! {
    sctlr = "sctlr_el1",
    cpacr = "cpacr_el1",
    ttbr0 = "ttbr0_el1",
    ttbr1 = "ttbr1_el1",
    tcr = "tcr_el1",
    mair = "mair_el1",
    amair = "amair_el1",
    vbar = "vbar_el1",
    contextidr = "contextidr_el1",
    tpidr = "tpidr_el1",
    tpidr_el0 = "tpidr_el0",
    tpidrro = "tpidrro_el0",
    sp_el1 = "sp_el1",
    elr = "elr_el1",
    spsr = "spsr_el1",
    esr = "esr_el1",
    far = "far_el1",
    afsr0 = "afsr0_el1",
    afsr1 = "afsr1_el1",
    par = "par_el1",
    cntkctl = "cntkctl_el1",
    csselr = "csselr_el1",
}

/// How a guest's time slice is accounted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SliceAccounting {
    /// The slice is a deadline on the physical counter, set at the first entry after the VMM
    /// got the CPU back from the others (`Vcpu::next_slice`): the host's work for this VM's
    /// exits runs on the VM's own clock, and re-entry continues the remaining slice.
    Charged,
    /// Every entry arms a full slice (test image control only: the host's work between
    /// entries is charged to nobody, so a trap-flooding guest never reaches its slice's end).
    #[cfg_attr(not(feature = "scenarios"), allow(dead_code))]
    FreshPerEntry,
}

/// CNTHP_CTL_EL2 (Arm ARM D19.11.12): ENABLE (bit 0), IMASK (bit 1), ISTATUS (bit 2).
const CNTHP_ENABLE: u64 = 1 << 0;
const CNTHP_ISTATUS: u64 = 1 << 2;

/// State a guest uses directly, outside the EL1 register file, that each VM owns: saved at
/// every exit, loaded at every entry, architectural reset values for a new VM.
#[derive(Clone, Copy, Default)]
struct Owned {
    /// CNTV_CTL_EL0 (Arm ARM D19.11.17): the EL1 virtual timer's ENABLE and IMASK. Reset:
    /// disabled.
    cntv_ctl: u64,
    /// CNTV_CVAL_EL0 (D19.11.18): its compare value (UNKNOWN at reset; 0 here).
    cntv_cval: u64,
    /// ICH_VMCR_EL2 (GICv3 IHI 0069 §12.5.26): what the guest's ICC_PMR_EL1, ICC_BPR0/1_EL1,
    /// ICC_IGRPEN0/1_EL1 and ICC_CTLR_EL1.{EOImode, CBPR} hold (with HCR_EL2.IMO/FMO set, EL1
    /// reaches the virtual ICV_* registers). Reset: 0.
    ich_vmcr: u64,
}

impl Owned {
    fn load(&self, gic: bool) {
        // The compare value first: the timer must not fire on the old one.
        msr!("cntv_cval_el0", self.cntv_cval);
        msr!("cntv_ctl_el0", self.cntv_ctl);
        if gic {
            msr!("ich_vmcr_el2", self.ich_vmcr);
        }
    }

    /// Saves the guest's copy and disarms its virtual timer, so that it can neither fire for
    /// the host nor show in the next VM.
    fn save(&mut self, gic: bool) {
        // ISTATUS (bit 2) is read-only: keep ENABLE and IMASK.
        self.cntv_ctl = mrs!("cntv_ctl_el0") & 0b11;
        self.cntv_cval = mrs!("cntv_cval_el0");
        msr!("cntv_ctl_el0", 0);
        if gic {
            self.ich_vmcr = mrs!("ich_vmcr_el2");
        }
    }
}

/// The EL2 traps a guest runs under, and what the CPU has that they depend on.
#[derive(Clone, Copy)]
struct Traps {
    /// HCR_EL2 ([`guest_exit::hcr_guest`]).
    hcr: u64,
    /// MDCR_EL2 ([`guest_exit::mdcr_guest`]).
    mdcr: u64,
    /// Bits added to the host's CPTR_EL2 ([`guest_exit::cptr_guest_traps`]).
    cptr: u64,
    /// The GICv3 system register interface exists (ID_AA64PFR0_EL1.GIC, bits 27:24), and with
    /// it ICH_VMCR_EL2.
    gic: bool,
    /// FEAT_PAN (ID_AA64MMFR1_EL1.PAN, bits 23:20) and FEAT_SSBS (ID_AA64PFR1_EL1.SSBS, bits
    /// 7:4), for an UNDEFINED exception's PSTATE.
    pan: bool,
    ssbs: bool,
}

/// The hardware's value of ID register (Op0 3, Op1 0, CRn 0, `crm`, `op2`), for those
/// [`guest_sysreg::PASSED_IDS`] lists.
fn hw_id(crm: u8, op2: u8) -> u64 {
    match (crm, op2) {
        (4, 0) => mrs!("id_aa64pfr0_el1"),
        (4, 1) => mrs!("id_aa64pfr1_el1"),
        (5, 0) => mrs!("id_aa64dfr0_el1"),
        (6, 0) => mrs!("id_aa64isar0_el1"),
        (6, 1) => mrs!("id_aa64isar1_el1"),
        // ID_AA64ISAR2_EL1: in the ID space that reads as zero where unallocated (Armv8.0).
        (6, 2) => mrs!("s3_0_c0_c6_2"),
        (7, 0) => mrs!("id_aa64mmfr0_el1"),
        (7, 1) => mrs!("id_aa64mmfr1_el1"),
        (7, 2) => mrs!("id_aa64mmfr2_el1"),
        _ => 0,
    }
}

impl Traps {
    /// From the CPU's ID registers.
    fn for_this_cpu() -> Self {
        let pfr0 = hw_id(4, 0);
        let dfr0 = hw_id(5, 0);
        let cpu = CpuFeatures::decode(pfr0, hw_id(4, 1), hw_id(7, 1), dfr0);
        // PMCR_EL0.N: only read where a PMU exists (else the read is UNDEFINED).
        let pmcr_n = if cpu.pmu {
            cpu_features::pmcr_n(mrs!("pmcr_el0"))
        } else {
            0
        };
        Self {
            hcr: guest_exit::hcr_guest(pfr0, hw_id(7, 1)),
            mdcr: guest_exit::mdcr_guest(dfr0, pmcr_n),
            cptr: guest_exit::cptr_guest_traps(pfr0),
            gic: cpu.gic,
            pan: cpu.pan,
            ssbs: cpu.ssbs,
        }
    }
}

/// Test image only: `host-unswitched` (the control of `tests-qemu/tests/cpu_state.rs`) runs
/// guests without the PMU and debug traps and without switching `Owned`, as before they
/// existed, to show that the test sees the difference.
#[cfg(feature = "scenarios")]
pub static SKIP_SWITCH_CONTROL: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Whether this run is the control without the switch (always false in the product image).
fn switch_skipped() -> bool {
    #[cfg(feature = "scenarios")]
    {
        SKIP_SWITCH_CONTROL.load(core::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "scenarios"))]
    {
        false
    }
}

/// Stops the EL2 physical timer (also called by the IRQ handler).
pub fn stop_slice_timer() {
    msr!("cnthp_ctl_el2", 0);
}

/// A guest CPU: its registers, its stage 2 and its time slice.
pub struct El2Vcpu {
    frame: Frame,
    el1: El1Regs,
    owned: Owned,
    traps: Traps,
    ids: GuestIds,
    vttbr: u64,
    vtcr: u64,
    slice_ticks: u64,
    /// Where the current slice ends, on the physical counter (`None`: the next entry starts
    /// one).
    deadline: Option<u64>,
    accounting: SliceAccounting,
}

impl El2Vcpu {
    /// A vCPU that starts at `entry` (EL1h, DAIF masked, MMU off) with x0 = `x0`, translated by
    /// the stage 2 rooted at `root` (built for `cfg`) under `vmid`, preempted every
    /// `slice_ticks` counter ticks of its own time, the host's work for its exits included
    /// (`accounting`).
    pub fn new(
        entry: u64,
        x0: u64,
        root: u64,
        cfg: stage2::Stage2Config,
        vmid: u8,
        slice_ticks: u64,
        accounting: SliceAccounting,
    ) -> Self {
        let mut frame = Frame {
            x: [0; 31],
            sp_el0: 0,
            pc: entry,
            spsr: guest_exit::SPSR_EL1H_MASKED,
            fpsr: 0,
            fpcr: 0,
            q: [0; 32],
            host_x: [0; 12],
            host_sp: 0,
            host_d: [0; 8],
            vector: 0,
            esr: 0,
            far: 0,
            hpfar: 0,
        };
        frame.x[0] = x0;
        let el1 = El1Regs {
            sctlr: guest_exit::SCTLR_EL1_RESET,
            cpacr: guest_exit::CPACR_EL1_FP,
            ..El1Regs::default()
        };
        let v = Self {
            frame,
            el1,
            // A new VM starts from reset values, never from what an earlier VM left.
            owned: Owned::default(),
            traps: Traps::for_this_cpu(),
            ids: GuestIds::from_hw(hw_id),
            vttbr: guest_exit::vttbr(root, vmid),
            vtcr: guest_exit::vtcr(cfg),
            slice_ticks,
            deadline: None,
            accounting,
        };
        // A VMID may have served an earlier VM: forget whatever the TLBs hold for it.
        v.select_stage2();
        // SAFETY: TLB maintenance for the VMID just selected (Arm ARM D8.16, TLBI
        // VMALLS12E1IS: stage 1 and 2 entries of the current VMID, Inner Shareable).
        unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
        v
    }

    /// Makes this VM's stage 2 the current one (for TLB maintenance and entry).
    fn select_stage2(&self) {
        msr!("vtcr_el2", self.vtcr);
        msr!("vttbr_el2", self.vttbr);
        // SAFETY: a barrier only.
        unsafe { core::arch::asm!("isb") };
    }

    /// Enters the guest until an exit the VMM must see: accesses the world switch answers
    /// itself ([`guest_sysreg::emulate`]) are emulated and the guest re-entered, within the
    /// same time slice.
    fn enter(&mut self) {
        loop {
            // SAFETY: the frame holds a complete guest context (from `new` or the last exit)
            // and lives on this task's stack for the whole call; the lower-EL vectors bring the
            // CPU back here with the host's callee-saved registers and stack restored from it.
            unsafe {
                core::arch::asm!("isb");
                qvm_vcpu_enter(&raw mut self.frame);
            }
            let saved = self.saved(false);
            let Some(access) = guest_exit::sysreg_access(&saved) else {
                return;
            };
            let rt = usize::from(access.rt);
            match guest_sysreg::emulate(access, &self.ids) {
                Emulation::Read(value) => {
                    if let Some(r) = self.frame.x.get_mut(rt) {
                        *r = value;
                    }
                }
                Emulation::Ignore => {}
                Emulation::SetWay(op) => {
                    let operand =
                        self.frame.x.get(rt).copied().unwrap_or(0) & guest_sysreg::SET_WAY_OPERAND;
                    set_way(op, operand);
                }
                Emulation::Undefined => {
                    // The guest's EL1 registers are still in the CPU.
                    let e = guest_exit::undef_entry(
                        self.frame.pc,
                        self.frame.spsr,
                        mrs!("vbar_el1"),
                        mrs!("sctlr_el1"),
                        self.traps.pan,
                        self.traps.ssbs,
                    );
                    msr!("elr_el1", e.elr_el1);
                    msr!("spsr_el1", e.spsr_el1);
                    msr!("esr_el1", e.esr_el1);
                    self.frame.pc = e.pc;
                    self.frame.spsr = e.pstate;
                    continue;
                }
                Emulation::Unhandled => return,
            }
            // Past the emulated instruction (A64: 4 bytes).
            self.frame.pc = self.frame.pc.wrapping_add(4);
        }
    }

    /// What the exit path saved; `timer_fired` as given.
    fn saved(&self, timer_fired: bool) -> SavedExit {
        SavedExit {
            vector: self.frame.vector,
            esr: self.frame.esr,
            far: self.frame.far,
            hpfar: self.frame.hpfar,
            timer_fired,
        }
    }

    /// VTTBR_EL2 of this VM.
    pub fn vttbr(&self) -> u64 {
        self.vttbr
    }

    /// VTCR_EL2 of this VM.
    pub fn vtcr(&self) -> u64 {
        self.vtcr
    }
}

/// The CPU's own view of where guest-physical `ipa` leads in the VM whose stage 2 is
/// `vttbr`/`vtcr`: `AT S12E1R` (Arm ARM C5.5; with the guest's MMU off, as at reset, its VA is
/// the IPA) as PAR_EL1 reports it. `None`: the walk faults.
pub fn cpu_translate(vttbr: u64, vtcr: u64, ipa: u64) -> Option<u64> {
    let host = (
        mrs!("vttbr_el2"),
        mrs!("vtcr_el2"),
        mrs!("hcr_el2"),
        mrs!("par_el1"),
        mrs!("sctlr_el1"),
    );
    msr!("vtcr_el2", vtcr);
    msr!("vttbr_el2", vttbr);
    msr!("sctlr_el1", guest_exit::SCTLR_EL1_RESET);
    msr!("hcr_el2", guest_exit::HCR_GUEST);
    // SAFETY: an address-translation instruction; it writes only PAR_EL1, restored below.
    unsafe { core::arch::asm!("isb", "at s12e1r, {a}", "isb", a = in(reg) ipa) };
    let par = mrs!("par_el1");
    msr!("hcr_el2", host.2);
    msr!("sctlr_el1", host.4);
    msr!("par_el1", host.3);
    msr!("vtcr_el2", host.1);
    msr!("vttbr_el2", host.0);
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("isb") };
    // PAR_EL1.F (bit 0) set: the walk faulted; else PA in bits 47:12 (Arm ARM D19.2.112).
    (par & 1 == 0).then_some((par & 0x0000_ffff_ffff_f000) | (ipa & 0xfff))
}

/// ID_AA64MMFR0_EL1.PARange (Arm ARM D19.2.64).
pub fn pa_range() -> u8 {
    (mrs!("id_aa64mmfr0_el1") & 0xf) as u8
}

/// Makes instructions the host just wrote (and cleaned to the point of coherency) visible to
/// the guest's fetches: invalidate the instruction caches (Arm ARM D7.5.2).
pub fn sync_icache() {
    // SAFETY: barriers and instruction-cache invalidation only.
    unsafe { core::arch::asm!("dsb ish", "ic ialluis", "dsb ish", "isb") };
}

/// Makes what a guest with its MMU off (non-cacheable stores) wrote to `[pa, pa + len)`
/// visible to the host's cached reads: `DC CIVAC` by line (Arm ARM C5.3), then `DSB`.
pub fn invalidate_dcache(pa: u64, len: u64) {
    /// Smallest data-cache line assumed (CTR_EL0.DminLine is at least this on every Armv8 core).
    const LINE: u64 = 64;
    let mut line = pa & !(LINE - 1);
    let end = pa.saturating_add(len);
    while line < end {
        // SAFETY: clean and invalidate by address of RAM the EL2 identity map covers; it
        // changes no value a program can observe.
        unsafe { core::arch::asm!("dc civac, {a}", a = in(reg) line, options(nostack)) };
        line += LINE;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy") };
}

/// Set/way cache maintenance for a guest (Arm ARM C5.3.13, C5.3.14): `operand` holds the
/// level and set/way only.
fn set_way(op: SetWayOp, operand: u64) {
    match op {
        // SAFETY: clean and invalidate by set/way: dirty lines are written back before they
        // are dropped, so no data of the host or another VM is lost.
        SetWayOp::CleanInvalidate => unsafe {
            core::arch::asm!("dc cisw, {v}", v = in(reg) operand, options(nostack))
        },
        // SAFETY: clean by set/way: writes dirty lines back, changes no value.
        SetWayOp::Clean => unsafe {
            core::arch::asm!("dc csw, {v}", v = in(reg) operand, options(nostack))
        },
    }
}

impl qvm::vcpu::Vcpu for El2Vcpu {
    fn run(&mut self) -> qvm::vcpu::Exit {
        // The slice's end on the physical counter: the EL2 physical timer fires once
        // CNTPCT_EL0 - CNTHP_CVAL_EL2 >= 0 (Arm ARM D12.2, the timer's condition; no offset
        // applies to it). The time since the last exit, the VMM's handling of it, is the VM's:
        // a slice already used up ends without entering the guest.
        let now = mrs!("cntpct_el0");
        let deadline = match (self.accounting, self.deadline) {
            (SliceAccounting::Charged, Some(d)) => d,
            _ => now.saturating_add(self.slice_ticks),
        };
        self.deadline = Some(deadline);
        if now >= deadline {
            return qvm::vcpu::Exit::Timer;
        }
        let host_hcr = mrs!("hcr_el2");
        let host_mdcr = mrs!("mdcr_el2");
        let host_cptr = mrs!("cptr_el2");
        let switch = !switch_skipped();
        self.el1.load();
        if switch {
            self.owned.load(self.traps.gic);
            // Nobody's debug state: the guest's MDSCR_EL1 accesses trap (MDCR_EL2.TDA), so the
            // CPU's own copy stays 0 (no breakpoint, watchpoint or step enabled at EL1/EL0).
            msr!("mdscr_el1", 0);
            msr!("mdcr_el2", self.traps.mdcr);
        }
        msr!("cptr_el2", host_cptr | self.traps.cptr);
        self.select_stage2();
        msr!("cnthctl_el2", guest_exit::CNTHCTL_GUEST);
        msr!("cntvoff_el2", 0);
        msr!("hcr_el2", self.traps.hcr);
        // CNTHP_CVAL_EL2: the compare value, absolute (unlike CNTHP_TVAL_EL2, which would
        // start a fresh interval at every entry).
        msr!("cnthp_cval_el2", deadline);
        msr!("cnthp_ctl_el2", CNTHP_ENABLE);
        self.enter();
        let ctl = mrs!("cnthp_ctl_el2");
        stop_slice_timer();
        self.el1.save();
        if switch {
            self.owned.save(self.traps.gic);
        }
        msr!("hcr_el2", host_hcr);
        msr!("mdcr_el2", host_mdcr);
        msr!("cptr_el2", host_cptr);
        // SAFETY: a barrier only.
        unsafe { core::arch::asm!("isb") };
        guest_exit::decode(
            self.saved(ctl & (CNTHP_ENABLE | CNTHP_ISTATUS) == CNTHP_ENABLE | CNTHP_ISTATUS),
        )
    }

    fn reg(&self, n: u8) -> u64 {
        self.frame.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    fn set_reg(&mut self, n: u8, value: u64) {
        if let Some(r) = self.frame.x.get_mut(usize::from(n)) {
            *r = value;
        }
    }

    fn pc(&self) -> u64 {
        self.frame.pc
    }

    fn set_pc(&mut self, pc: u64) {
        self.frame.pc = pc;
    }

    fn next_slice(&mut self) {
        self.deadline = None;
    }

    fn invalidate_ipa(&mut self, ipa: u64, len: u64) {
        /// Past this many pages one VMID-wide invalidation is cheaper.
        const MAX_PAGES: u64 = 64;
        self.select_stage2();
        let pages = len.div_ceil(4096);
        if pages > MAX_PAGES {
            // SAFETY: TLB maintenance for the current VMID only (Arm ARM D8.16).
            unsafe { core::arch::asm!("dsb ishst", "tlbi vmalls12e1is", "dsb ish", "isb") };
            return;
        }
        // SAFETY: stage-2 TLB maintenance by IPA (TLBI IPAS2E1IS takes IPA[47:12] in bits
        // 35:0) and then of stage-1 entries that may have cached combined results (TLBI
        // VMALLE1IS), both for the current VMID (Arm ARM D8.16.2 "TLB maintenance
        // requirements when changing stage 2 entries").
        unsafe {
            core::arch::asm!("dsb ishst");
            for page in 0..pages {
                let arg = (ipa >> 12).wrapping_add(page) & ((1 << 36) - 1);
                core::arch::asm!("tlbi ipas2e1is, {a}", a = in(reg) arg);
            }
            core::arch::asm!("dsb ish", "tlbi vmalle1is", "dsb ish", "isb");
        }
    }
}
