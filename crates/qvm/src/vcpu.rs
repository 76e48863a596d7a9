//! What the VMM sees of a virtual CPU: it runs until the guest does something the VMM must
//! handle (an [`Exit`]), and its registers can be read and written between runs.
//!
//! The host implements [`Vcpu`] with its EL2 world switch (HCR_EL2, VTTBR_EL2, the lower-EL
//! exception vectors); tests implement it with a script.

/// Why the guest stopped running and the VMM got the CPU back (decoded from ESR_EL2, Arm ARM
/// D17.2.37, and the vector that was taken).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Exit {
    /// `HVC #imm` (ESR_EL2.EC = 0x16). The function id is in x0 ([`crate::abi`]); ELR_EL2
    /// already points past the instruction (HVC is a call, Arm ARM D1.10.2).
    Hvc {
        /// The instruction's immediate.
        imm: u16,
    },
    /// `SMC #imm` trapped by HCR_EL2.TSC (EC = 0x17); ELR_EL2 points at the instruction.
    Smc {
        /// The instruction's immediate.
        imm: u16,
    },
    /// A stage-2 data abort from EL1 (EC = 0x24): the guest touched a guest-physical address
    /// its CPU stage 2 does not map (or maps without that permission).
    DataAbort {
        /// The faulting guest-physical address: HPFAR_EL2.FIPA with FAR_EL2\[11:0\].
        ipa: u64,
        /// ESR_EL2.ISS (Arm ARM D17.2.37, "ISS encoding for an exception from a Data Abort").
        iss: u32,
        /// ESR_EL2.IL: the instruction was 32 bits long (always 1 on AArch64).
        il32: bool,
    },
    /// A stage-2 instruction abort from EL1 (EC = 0x20): the guest jumped outside its RAM.
    InstructionAbort {
        /// The faulting guest-physical address.
        ipa: u64,
        /// ESR_EL2.ISS.
        iss: u32,
    },
    /// `WFI` (or `WFE` when `wfe`) trapped by HCR_EL2.TWI/TWE (EC = 0x01); ELR_EL2 points at
    /// the instruction.
    Wfx {
        /// It was WFE.
        wfe: bool,
    },
    /// The VMM's time slice ended (the EL2 physical timer fired while the guest ran).
    Timer,
    /// A host interrupt arrived while the guest ran (e.g. the IOMMU's event queue); the host
    /// takes it as soon as the VMM gives the CPU back.
    HostIrq,
    /// A trapped system register access (EC = 0x18) that the world switch does not emulate
    /// itself (it answers ID, PMU, debug, RAS and set/way accesses: docs/world-switch.md): the
    /// VMM stops the guest and names the register.
    SysReg {
        /// What the syndrome says: the register, Rt and the direction.
        access: crate::sysreg::SysRegAccess,
    },
    /// Anything else a guest can cause at EL2 (an exception class the host does not expect, an
    /// SError): the VMM stops the guest.
    Other {
        /// ESR_EL2.EC.
        ec: u8,
        /// ESR_EL2.ISS.
        iss: u32,
        /// FAR_EL2.
        far: u64,
    },
}

/// A virtual CPU the VMM drives.
pub trait Vcpu {
    /// Enters the guest and runs it until the next exit.
    fn run(&mut self) -> Exit;
    /// General register `n` (0..=30); 31 reads as zero (XZR in a data abort's SRT).
    fn reg(&self, n: u8) -> u64;
    /// Sets general register `n` (0..=30); 31 is ignored.
    fn set_reg(&mut self, n: u8, value: u64);
    /// The guest's program counter (ELR_EL2 at the exit).
    fn pc(&self) -> u64;
    /// Sets where the guest resumes (e.g. past an emulated instruction).
    fn set_pc(&mut self, pc: u64);
    /// Forgets every CPU TLB entry of this VM's stage 2 for `[ipa, ipa + len)` (after the VMM
    /// changed its CPU stage 2: `TLBI IPAS2E1IS` and `TLBI VMALLE1IS` for the VM's VMID).
    fn invalidate_ipa(&mut self, ipa: u64, len: u64);
}
