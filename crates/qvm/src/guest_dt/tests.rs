use super::*;

fn cells(v: &[u8]) -> std::vec::Vec<u32> {
    v.chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

fn strs(v: &[u8]) -> std::vec::Vec<&str> {
    v.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| core::str::from_utf8(s).unwrap())
        .collect()
}

fn tree() -> (std::vec::Vec<u8>, GuestDt<'static>) {
    let dt = GuestDt {
        ram: GpaRange::new(Gpa(0x4000_0000), 2 << 20).unwrap(),
        bootargs: "rogue.outside=0x48000000",
    };
    let mut buf = vec![0u8; 2048];
    let len = dt.write(&mut buf).unwrap();
    buf.truncate(len);
    (buf, dt)
}

fn prop<'a>(n: fdt::node::FdtNode<'_, 'a>, name: &str) -> &'a [u8] {
    n.property(name).unwrap().value
}

#[test]
fn the_tree_parses_back_with_every_value() {
    let (buf, dt) = tree();
    let fdt = fdt::Fdt::new(&buf).unwrap();
    assert_eq!(fdt.total_size(), buf.len());
    assert_eq!(dt.address(), Gpa(0x4000_0000 + (2 << 20) - abi::DTB_MAX));

    let rsv: std::vec::Vec<_> = fdt
        .memory_reservations()
        .map(|r| (r.address() as usize, r.size()))
        .collect();
    assert_eq!(rsv, [(0x401f_0000, 64 << 10)]);

    let root = fdt.find_node("/").unwrap();
    assert_eq!(cells(prop(root, "#address-cells")), [2]);
    assert_eq!(cells(prop(root, "#size-cells")), [2]);
    assert_eq!(
        strs(prop(root, "compatible")),
        ["qvm,guest", "linux,dummy-virt"]
    );

    assert_eq!(fdt.chosen().bootargs(), Some("rogue.outside=0x48000000"));
    assert_eq!(fdt.chosen().stdout().unwrap().name, "pl011@9000000");

    let mem = fdt.find_node("/memory@40000000").unwrap();
    assert_eq!(strs(prop(mem, "device_type")), ["memory"]);
    assert_eq!(cells(prop(mem, "reg")), [0, 0x4000_0000, 0, 2 << 20]);

    let uart = fdt.find_node("/pl011@9000000").unwrap();
    assert_eq!(
        strs(prop(uart, "compatible")),
        ["arm,pl011", "arm,primecell"]
    );
    assert_eq!(cells(prop(uart, "reg")), [0, 0x0900_0000, 0, 0x1000]);

    let pci = fdt.find_node("/pcie@30000000").unwrap();
    assert_eq!(strs(prop(pci, "compatible")), ["pci-host-ecam-generic"]);
    assert_eq!(strs(prop(pci, "device_type")), ["pci"]);
    assert_eq!(cells(prop(pci, "reg")), [0, 0x3000_0000, 0, 1 << 20]);
    assert_eq!(cells(prop(pci, "bus-range")), [0, 0]);
    assert_eq!(cells(prop(pci, "#address-cells")), [3]);
    assert_eq!(cells(prop(pci, "#size-cells")), [2]);
    assert_eq!(
        cells(prop(pci, "ranges")),
        [0x0200_0000, 0, 0x1000_0000, 0, 0x1000_0000, 0, 0x1000_0000]
    );
    // Exactly these nodes.
    let names: std::vec::Vec<_> = fdt.all_nodes().map(|n| n.name).collect();
    assert_eq!(
        names,
        [
            "/",
            "chosen",
            "memory@40000000",
            "pl011@9000000",
            "pcie@30000000"
        ]
    );
}

#[test]
fn a_small_buffer_is_refused_not_overrun() {
    let (full, dt) = tree();
    for len in 0..full.len() {
        let mut buf = vec![0xeeu8; len + 16];
        assert_eq!(dt.write(&mut buf[..len]), Err(TooSmall { have: len }));
        assert!(buf[len..].iter().all(|&b| b == 0xee));
    }
    // The control: exactly enough works.
    let mut buf = vec![0u8; full.len()];
    assert_eq!(dt.write(&mut buf), Ok(full.len()));
    assert_eq!(buf, full);
}

#[test]
fn unity_ram_is_described_where_it_is() {
    let dt = GuestDt {
        ram: GpaRange::new(Gpa(0x4800_0000), 4 << 20).unwrap(),
        bootargs: "",
    };
    let mut buf = vec![0u8; 2048];
    let len = dt.write(&mut buf).unwrap();
    let fdt = fdt::Fdt::new(&buf[..len]).unwrap();
    let mem = fdt.find_node("/memory@48000000").unwrap();
    assert_eq!(
        cells(mem.property("reg").unwrap().value),
        [0, 0x4800_0000, 0, 4 << 20]
    );
    assert_eq!(fdt.chosen().bootargs(), Some(""));
}
