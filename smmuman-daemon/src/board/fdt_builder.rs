//! Builds flattened device trees in tests (Devicetree Specification v0.4 §5), so that each
//! failure case is a small edit of a known-good tree.

/// A node: name, properties, children.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub props: Vec<(String, Vec<u8>)>,
    pub children: Vec<Node>,
}

pub fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

pub fn strs(values: &[&str]) -> Vec<u8> {
    values.iter().flat_map(|s| s.bytes().chain([0])).collect()
}

impl Node {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Sets (or replaces) a property.
    pub fn prop(mut self, name: &str, value: Vec<u8>) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: Vec<u8>) {
        self.props.retain(|(n, _)| n != name);
        self.props.push((name.into(), value));
    }

    pub fn remove(&mut self, name: &str) {
        self.props.retain(|(n, _)| n != name);
    }

    pub fn child(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    /// The descendant at `path` (names separated by `/`, relative to this node).
    pub fn at(&mut self, path: &str) -> &mut Node {
        let mut node = self;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = node
                .children
                .iter_mut()
                .find(|c| c.name == part)
                .expect("no such node");
        }
        node
    }

    /// Serialises the tree with the given `/memreserve/` entries.
    pub fn build(&self, memreserve: &[(u64, u64)]) -> Vec<u8> {
        let mut strings = Vec::new();
        let mut structure = Vec::new();
        self.emit(&mut structure, &mut strings);
        structure.extend(9u32.to_be_bytes()); // FDT_END
        let mut rsv = Vec::new();
        for (a, s) in memreserve.iter().chain([&(0, 0)]) {
            rsv.extend(a.to_be_bytes());
            rsv.extend(s.to_be_bytes());
        }
        let off_rsv = 40;
        let off_struct = off_rsv + rsv.len();
        let off_strings = off_struct + structure.len();
        let total = off_strings + strings.len();
        let header = [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsv as u32,
            17,
            16,
            0,
            strings.len() as u32,
            structure.len() as u32,
        ];
        let mut out = cells(&header);
        out.extend(rsv);
        out.extend(structure);
        out.extend(strings);
        out
    }

    fn emit(&self, out: &mut Vec<u8>, strings: &mut Vec<u8>) {
        out.extend(1u32.to_be_bytes()); // FDT_BEGIN_NODE
        out.extend(self.name.bytes().chain([0]));
        pad(out);
        for (name, value) in &self.props {
            let offset = find_or_add(strings, name);
            out.extend(3u32.to_be_bytes()); // FDT_PROP
            out.extend((value.len() as u32).to_be_bytes());
            out.extend(offset.to_be_bytes());
            out.extend(value);
            pad(out);
        }
        for child in &self.children {
            child.emit(out, strings);
        }
        out.extend(2u32.to_be_bytes()); // FDT_END_NODE
    }
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn find_or_add(strings: &mut Vec<u8>, name: &str) -> u32 {
    let needle: Vec<u8> = name.bytes().chain([0]).collect();
    if let Some(pos) = strings
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
    {
        if pos == 0 || strings[pos - 1] == 0 {
            return pos as u32;
        }
    }
    let pos = strings.len();
    strings.extend(needle);
    pos as u32
}

/// A tree shaped like QEMU `virt` with an SMMUv3 (the parts the daemon reads).
pub fn virt() -> Node {
    Node::new("")
        .prop("#address-cells", cells(&[2]))
        .prop("#size-cells", cells(&[2]))
        .prop("interrupt-parent", cells(&[0x8002]))
        .child(
            Node::new("memory@40000000")
                .prop("device_type", strs(&["memory"]))
                .prop("reg", cells(&[0, 0x4000_0000, 0, 0x2000_0000])),
        )
        .child(
            Node::new("intc@8000000")
                .prop("compatible", strs(&["arm,gic-v3"]))
                .prop("#interrupt-cells", cells(&[3]))
                .prop("phandle", cells(&[0x8002]))
                .prop(
                    "reg",
                    cells(&[0, 0x800_0000, 0, 0x10000, 0, 0x80a_0000, 0, 0xf6_0000]),
                ),
        )
        .child(
            Node::new("pl011@9000000")
                .prop("compatible", strs(&["arm,pl011", "arm,primecell"]))
                .prop("reg", cells(&[0, 0x900_0000, 0, 0x1000])),
        )
        .child(
            Node::new("smmuv3@9050000")
                .prop("compatible", strs(&["arm,smmu-v3"]))
                .prop("reg", cells(&[0, 0x905_0000, 0, 0x20000]))
                .prop(
                    "interrupts",
                    cells(&[0, 0x4a, 1, 0, 0x4b, 1, 0, 0x4c, 1, 0, 0x4d, 1]),
                )
                .prop(
                    "interrupt-names",
                    strs(&["eventq", "priq", "cmdq-sync", "gerror"]),
                )
                .prop("dma-coherent", vec![])
                .prop("#iommu-cells", cells(&[1]))
                .prop("phandle", cells(&[0x8004])),
        )
        .child(
            Node::new("pcie@10000000")
                .prop("compatible", strs(&["pci-host-ecam-generic"]))
                .prop("device_type", strs(&["pci"]))
                .prop("#address-cells", cells(&[3]))
                .prop("#size-cells", cells(&[2]))
                .prop("bus-range", cells(&[0, 0xff]))
                .prop("reg", cells(&[0x40, 0x1000_0000, 0, 0x1000_0000]))
                .prop(
                    "ranges",
                    cells(&[
                        0x0100_0000,
                        0,
                        0,
                        0,
                        0x3eff_0000,
                        0,
                        0x10000, // I/O
                        0x0200_0000,
                        0,
                        0x1000_0000,
                        0,
                        0x1000_0000,
                        0,
                        0x2eff_0000, // mem32
                        0x0300_0000,
                        0x80,
                        0,
                        0x80,
                        0,
                        0x80,
                        0, // mem64
                    ]),
                )
                .prop("iommu-map", cells(&[0, 0x8004, 0, 0x10000]))
                .prop("dma-coherent", vec![]),
        )
        .child(
            Node::new("chosen")
                .prop("bootargs", strs(&["scenario=boot st=2level"]))
                .prop("stdout-path", strs(&["/pl011@9000000"])),
        )
}
