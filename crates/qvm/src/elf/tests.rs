use super::*;
use crate::guest_ram::SliceRam;

const RAM: u64 = 0x4000_0000;
const RAM_LEN: usize = 1 << 20;

/// A program header for the builder.
#[derive(Clone, Copy)]
pub(crate) struct Ph {
    pub(crate) kind: u32,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) paddr: u64,
    pub(crate) filesz: u64,
    pub(crate) memsz: u64,
}

/// An ELF64 AArch64 executable: header, program headers at 64, then `payload` at 0x100.
pub(crate) fn image(entry: u64, phs: &[Ph], payload: &[u8]) -> std::vec::Vec<u8> {
    let mut b = vec![0u8; 0x100];
    b[..4].copy_from_slice(&ELFMAG);
    b[4] = ELFCLASS64;
    b[5] = ELFDATA2LSB;
    b[6] = EV_CURRENT;
    b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
    b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
    b[20..24].copy_from_slice(&1u32.to_le_bytes());
    b[24..32].copy_from_slice(&entry.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[52..54].copy_from_slice(&64u16.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    let mut table = vec![];
    for p in phs {
        let mut h = [0u8; 56];
        h[0..4].copy_from_slice(&p.kind.to_le_bytes());
        h[4..8].copy_from_slice(&p.flags.to_le_bytes());
        h[8..16].copy_from_slice(&p.offset.to_le_bytes());
        h[16..24].copy_from_slice(&p.paddr.to_le_bytes());
        h[24..32].copy_from_slice(&p.paddr.to_le_bytes());
        h[32..40].copy_from_slice(&p.filesz.to_le_bytes());
        h[40..48].copy_from_slice(&p.memsz.to_le_bytes());
        table.extend_from_slice(&h);
    }
    b.splice(64..64, table);
    b.truncate(0x100.max(64 + 56 * phs.len()));
    b.resize(0x100.max(b.len()), 0);
    b.extend_from_slice(payload);
    b
}

fn good() -> std::vec::Vec<u8> {
    let code = [0xaa; 0x40];
    image(
        RAM + 0x1000,
        &[
            Ph {
                kind: PT_LOAD,
                flags: 5,
                offset: 0x100,
                paddr: RAM + 0x1000,
                filesz: 0x20,
                memsz: 0x20,
            },
            Ph {
                kind: 4,
                flags: 4,
                offset: 0,
                paddr: 0,
                filesz: 0,
                memsz: 0,
            },
            Ph {
                kind: PT_LOAD,
                flags: 6,
                offset: 0x120,
                paddr: RAM + 0x3000,
                filesz: 0x20,
                memsz: 0x1000,
            },
        ],
        &code,
    )
}

fn load_into(img: &[u8], ram: &mut [u8]) -> Result<Loaded, ElfError> {
    let mut r = SliceRam::new(Gpa(RAM), ram).unwrap();
    load(img, &mut r)
}

#[test]
fn a_good_image_loads_its_segments_and_zeroes_bss() {
    let mut ram = vec![0x55u8; RAM_LEN];
    let l = load_into(&good(), &mut ram).unwrap();
    assert_eq!(l.entry, Gpa(RAM + 0x1000));
    assert_eq!(l.segments, 2);
    assert_eq!(l.end, Gpa(RAM + 0x4000));
    assert!(ram[0x1000..0x1020].iter().all(|&b| b == 0xaa));
    assert!(
        ram[0x1020..0x1040].iter().all(|&b| b == 0x55),
        "past p_memsz untouched"
    );
    assert!(ram[0x3000..0x3020].iter().all(|&b| b == 0xaa));
    assert!(ram[0x3020..0x4000].iter().all(|&b| b == 0), "bss zeroed");
    assert_eq!(ram[0x4000], 0x55);
}

fn set(img: &mut [u8], at: usize, bytes: &[u8]) {
    img[at..at + bytes.len()].copy_from_slice(bytes);
}

fn ph_field(index: usize, off: usize) -> usize {
    64 + 56 * index + off
}

#[test]
fn every_wrong_field_is_named() {
    let check = |f: &dyn Fn(&mut std::vec::Vec<u8>), want: &str| {
        let mut img = good();
        f(&mut img);
        let mut ram = vec![0x55u8; RAM_LEN];
        let e = load_into(&img, &mut ram).unwrap_err();
        assert_eq!(e.to_string(), want);
        assert!(ram.iter().all(|&b| b == 0x55), "nothing written for {want}");
    };
    check(
        &|i| i.truncate(10),
        "ELF image of 10 bytes is shorter than its 64-byte header",
    );
    check(
        &|i| i[0] = 0,
        "ELF header: e_ident[EI_MAG0..3] is 0x464c4500, expected 0x464c457f (\"\\x7fELF\")",
    );
    check(
        &|i| i[4] = 1,
        "ELF header: e_ident[EI_CLASS] is 0x1, expected 2 (ELFCLASS64)",
    );
    check(
        &|i| i[5] = 2,
        "ELF header: e_ident[EI_DATA] is 0x2, expected 1 (ELFDATA2LSB)",
    );
    check(
        &|i| set(i, 16, &3u16.to_le_bytes()),
        "ELF header: e_type is 0x3, expected 2 (ET_EXEC)",
    );
    check(
        &|i| set(i, 18, &62u16.to_le_bytes()),
        "ELF header: e_machine is 0x3e, expected 183 (EM_AARCH64)",
    );
    check(
        &|i| set(i, 54, &32u16.to_le_bytes()),
        "ELF header: e_phentsize is 0x20, expected 56 (Elf64_Phdr)",
    );
    check(
        &|i| set(i, 56, &0u16.to_le_bytes()),
        "ELF header: e_phnum is 0x0, expected 1 to 32",
    );
    check(
        &|i| set(i, 32, &u64::MAX.to_le_bytes()),
        "ELF header: 3 program headers at offset 0xffffffffffffffff do not fit in the 320-byte image",
    );
    check(
        &|i| set(i, ph_field(2, 32), &0x2000u64.to_le_bytes()),
        "program header 2: p_filesz = 0x2000: larger than p_memsz",
    );
    check(
        &|i| set(i, ph_field(0, 8), &0x130u64.to_le_bytes()),
        "program header 0: p_offset = 0x130: p_offset + p_filesz is past the end of the image",
    );
    check(
        &|i| set(i, ph_field(0, 24), &(RAM - 0x1000).to_le_bytes()),
        "program header 0: p_paddr = 0x3ffff000: [p_paddr, p_paddr + p_memsz) is not inside the guest's RAM below the device tree's room",
    );
    // The device tree's room at the top of RAM is not loadable.
    check(
        &|i| set(i, ph_field(2, 24), &(RAM + RAM_LEN as u64 - DTB_MAX).to_le_bytes()),
        "program header 2: p_paddr = 0x400f0000: [p_paddr, p_paddr + p_memsz) is not inside the guest's RAM below the device tree's room",
    );
    check(
        &|i| set(i, ph_field(2, 40), &u64::MAX.to_le_bytes()),
        "program header 2: p_memsz = 0xffffffffffffffff: p_paddr + p_memsz overflows",
    );
    check(
        &|i| set(i, ph_field(2, 24), &(RAM + 0x1010).to_le_bytes()),
        "program header 2: its memory overlaps that of program header 0",
    );
    check(
        &|i| set(i, 24, &(RAM + 0x3000).to_le_bytes()),
        "ELF header: e_entry = 0x40003000 is not inside an executable PT_LOAD segment",
    );
    check(
        &|i| {
            set(i, ph_field(0, 0), &4u32.to_le_bytes());
            set(i, ph_field(2, 0), &4u32.to_le_bytes());
        },
        "ELF image has no PT_LOAD segment",
    );
}

#[test]
fn random_and_mutated_images_never_panic_nor_write_outside_ram() {
    let mut rng = crate::plan::tests::Rng(0xfeed_beef);
    let base = good();
    // RAM with a guard on each side; only the middle is the guest's.
    for round in 0..20_000 {
        let img: std::vec::Vec<u8> = if round % 4 == 0 {
            let len = (rng.next() % 400) as usize;
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            let mut m = base.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let at = (rng.next() % m.len() as u64) as usize;
                m[at] = rng.next() as u8;
            }
            m
        };
        let mut ram = Watched {
            range: GpaRange::new(Gpa(RAM), RAM_LEN as u64).unwrap(),
            writes: 0,
        };
        if let Err(e) = load(&img, &mut ram) {
            let _ = e.to_string();
            assert_eq!(ram.writes, 0, "a refused image wrote nothing");
        }
    }
}

/// A RAM that fails the test on any write outside the loadable part.
struct Watched {
    range: GpaRange,
    writes: usize,
}

impl GuestRam for Watched {
    fn range(&self) -> GpaRange {
        self.range
    }
    fn write(&mut self, gpa: Gpa, bytes: &[u8]) -> Result<(), OutsideRam> {
        self.zero(gpa, bytes.len() as u64)
    }
    fn read(&self, _: Gpa, _: &mut [u8]) -> Result<(), OutsideRam> {
        Ok(())
    }
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), OutsideRam> {
        assert!(
            loadable(self.range).unwrap().contains(gpa.get(), len),
            "write at {gpa} len {len:#x}"
        );
        self.writes += 1;
        Ok(())
    }
}
