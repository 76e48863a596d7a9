//! The x86 MSI message a remapping unit's fault event is sent as (VT-d §5.1.6: FEADDR/FEDATA
//! hold an MSI in the Intel 64 format while interrupt remapping is off), as plain encoders
//! over the Intel SDM's bit positions (Vol. 3A §11.11, "Message Signalled Interrupts").
//!
//! * Message address (§11.11.1, Figure 11-24): bits 31:20 = 0xFEE, bits 19:12 = Destination
//!   ID (the target's local APIC ID), bit 3 = RH (redirection hint, 0: deliver to the
//!   destination named), bit 2 = DM (destination mode, 0: physical).
//! * Message data (§11.11.2, Figure 11-25): bits 7:0 = vector, bits 10:8 = delivery mode
//!   (000 fixed), bit 14 = level (ignored for edge), bit 15 = trigger mode (0 edge).

/// Message address bits 31:20 (§11.11.1): the local APICs' MSI window.
pub const ADDRESS_BASE: u32 = 0xfee0_0000;
/// Vectors 0–31 are the CPU's exceptions (SDM Vol. 3A §7.2); 32–255 may be used by interrupts
/// (16–31 are rejected by the local APIC as illegal, §11.5.2).
pub const FIRST_VECTOR: u8 = 32;

/// The message address that delivers to the local APIC `apic_id` in physical destination mode,
/// no redirection hint (§11.11.1).
pub const fn address(apic_id: u8) -> u32 {
    ADDRESS_BASE | ((apic_id as u32) << 12)
}

/// The message data of a fixed, edge-triggered interrupt at `vector` (§11.11.2); `None` for an
/// exception vector (below [`FIRST_VECTOR`]).
pub const fn data(vector: u8) -> Option<u32> {
    if vector < FIRST_VECTOR {
        return None;
    }
    // Delivery mode 000 (fixed), level 0, trigger 0 (edge).
    Some(vector as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_names_the_apic_in_physical_mode() {
        assert_eq!(address(0), 0xfee0_0000);
        assert_eq!(address(3), 0xfee0_3000);
        assert_eq!(address(0xff), 0xfeef_f000);
        // RH (bit 3) and DM (bit 2) clear, bits 1:0 clear as FEADDR requires.
        assert_eq!(address(0x5a) & 0xf, 0);
    }

    #[test]
    fn the_data_is_a_fixed_edge_interrupt_and_exception_vectors_are_refused() {
        assert_eq!(data(0x40), Some(0x40));
        let d = data(0xfe).unwrap();
        assert_eq!(d & 0x700, 0, "delivery mode fixed");
        assert_eq!(d & (1 << 15), 0, "edge");
        assert_eq!(data(31), None);
        assert_eq!(data(8), None);
    }
}
