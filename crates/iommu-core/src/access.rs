//! The permissions a DMA window grants.

bitflags::bitflags! {
    /// What a device may do through a mapping. Stage 2 encodes READ/WRITE as S2AP and EXEC as
    /// the absence of XN (Arm ARM D8.4.1).
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
    pub struct Access: u8 {
        /// The device may read.
        const READ = 1 << 0;
        /// The device may write.
        const WRITE = 1 << 1;
        /// The device may fetch instructions (only meaningful to masters that tag fetches).
        const EXEC = 1 << 2;
        /// The mapping reaches device registers, not memory: stage 2 gives it the Device-nGnRE
        /// memory type (Arm ARM D8.5) instead of Normal Write-Back. Used by a VMM for a
        /// pass-through device's BAR in its guest's CPU stage 2; never on the client wire.
        const DEVICE = 1 << 3;
        /// Read and write: the usual grant for a data buffer.
        const RW = Self::READ.bits() | Self::WRITE.bits();
    }
}
