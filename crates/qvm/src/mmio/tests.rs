use super::*;

/// An ISS for a data abort with a valid syndrome: translation fault at level 3.
fn iss(sas: u32, srt: u32, write: bool, sse: bool, sf: bool) -> u32 {
    ISV | (sas << SAS_SHIFT)
        | (srt << SRT_SHIFT)
        | if write { WNR } else { 0 }
        | if sse { SSE } else { 0 }
        | if sf { SF } else { 0 }
        | 0b000111
}

#[test]
fn the_syndrome_decodes_into_an_access() {
    // STR W3, [x]: 4 bytes, register 3, write.
    let a = Access::decode(iss(2, 3, true, false, false)).unwrap();
    assert_eq!(
        (a.size, a.reg, a.write, a.sign_extend, a.sf),
        (4, 3, true, false, false)
    );
    assert_eq!(a.store_value(0x1122_3344_5566_7788), 0x5566_7788);
    // LDRB W0: 1 byte, zero-extended.
    let a = Access::decode(iss(0, 0, false, false, false)).unwrap();
    assert_eq!(a.size, 1);
    assert_eq!(a.load_value(0x1ff), 0xff);
    // LDRSB X5: sign-extended to 64 bits.
    let a = Access::decode(iss(0, 5, false, true, true)).unwrap();
    assert_eq!(a.load_value(0x80), 0xffff_ffff_ffff_ff80);
    // LDRSH W5: sign-extended, then the W register's upper half is zero.
    let a = Access::decode(iss(1, 5, false, true, false)).unwrap();
    assert_eq!(a.load_value(0x8000), 0xffff_8000);
    // LDR X30: 8 bytes.
    let a = Access::decode(iss(3, 30, false, false, true)).unwrap();
    assert_eq!((a.size, a.reg), (8, 30));
    assert_eq!(a.load_value(u64::MAX), u64::MAX);
    // Acquire/release is reported.
    assert!(
        Access::decode(iss(2, 1, false, false, false) | AR)
            .unwrap()
            .acquire_release
    );
}

#[test]
fn what_cannot_be_emulated_says_why() {
    let ok = iss(2, 1, true, false, false);
    assert_eq!(Access::decode(ok & !ISV), Err(DecodeError::NoSyndrome));
    assert_eq!(Access::decode(ok | CM), Err(DecodeError::CacheMaintenance));
    assert_eq!(Access::decode(ok | S1PTW), Err(DecodeError::Stage1Walk));
    // Synchronous external abort (DFSC 0b010000).
    assert_eq!(
        Access::decode((ok & !DFSC_MASK) | 0b010000),
        Err(DecodeError::Status { dfsc: 0x10 })
    );
    // Permission and access flag faults are fine.
    assert!(Access::decode((ok & !DFSC_MASK) | 0b001111).is_ok());
    assert!(Access::decode((ok & !DFSC_MASK) | 0b001011).is_ok());
    assert_eq!(
        DecodeError::NoSyndrome.to_string(),
        "the instruction gave no syndrome (ESR_EL2.ISS.ISV = 0): the VMM cannot emulate it"
    );
}

#[test]
fn addresses_reach_the_console_the_ecam_or_nothing() {
    assert_eq!(target(Gpa(abi::UART_BASE), 4), Target::Uart(0));
    assert_eq!(target(Gpa(abi::UART_BASE + 0x18), 4), Target::Uart(0x18));
    assert_eq!(
        target(Gpa(abi::UART_BASE + 0xffc), 8),
        Target::Nothing,
        "crosses the page"
    );
    assert_eq!(
        target(Gpa(abi::ECAM_BASE + 0x8000), 4),
        Target::Ecam(0x8000)
    );
    assert_eq!(
        target(Gpa(abi::ECAM_BASE + abi::ECAM_SIZE), 4),
        Target::Nothing
    );
    assert_eq!(target(Gpa(abi::PCI_MMIO_BASE), 4), Target::Nothing);
    assert_eq!(target(Gpa(u64::MAX), 8), Target::Nothing);
    assert_eq!(uart_read(abi::UART_FR), u64::from(abi::UART_FR_IDLE));
    assert_eq!(uart_read(0x30), 0);
    assert_eq!(uart_write(abi::UART_DR, 0x141), Some(b'A'));
    assert_eq!(uart_write(0x30, 0x41), None);
}

#[test]
fn random_syndromes_never_panic() {
    let mut rng = crate::plan::tests::Rng(77);
    for _ in 0..100_000 {
        let i = rng.next() as u32;
        if let Ok(a) = Access::decode(i) {
            assert!(matches!(a.size, 1 | 2 | 4 | 8));
            assert!(a.reg <= 31);
            let _ = a.load_value(rng.next());
        }
        let _ = target(Gpa(rng.next()), 1 << (rng.next() % 4));
    }
}
