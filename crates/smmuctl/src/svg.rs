//! `map --svg FILE`: the host-physical memory map as a picture.
//!
//! One horizontal address axis, addresses rising to the right; one lane per thing placed on
//! it: the memory map (RAM, the daemon's own memory, MMIO), each VM's assignment (the host
//! memory the host let its devices reach), each device's windows at the host addresses they
//! reach (labelled with their I/O address), and the device's faults, marked at the address
//! the device used (a refused address has no host address: it is where the DMA aimed).
//!
//! The axis is not linear: a board's map spans gigabytes while a window is a few pages, so
//! each stretch between two edges of anything drawn gets a width that grows with the log of
//! its size, and stretches nothing covers are cut out (a zig-zag marks the cut). Every edge is
//! labelled with its address.

use crate::snapshot::{device_name, Snapshot};
use crate::table::access;
use qvm::fault_log::Burst;
use smmuman_admin_api::RegionKind;
use smmuman_api::ObjectId;

const LEFT: f64 = 230.0;
const TOP: f64 = 50.0;
const LANE: f64 = 34.0;
const BAR: f64 = 22.0;
const GAP_W: f64 = 16.0;
const PAGE: u64 = 0x1000;

/// Colours per VM (assignment lighter, windows darker).
const VM_COLOURS: [(&str, &str); 6] = [
    ("#cfe0fb", "#3b73c8"),
    ("#fde2c4", "#d9822b"),
    ("#d9f2d0", "#3f9a2e"),
    ("#ecd6f5", "#8e44ad"),
    ("#fbd3d8", "#c0392b"),
    ("#d2f1f0", "#1f8a84"),
];

/// A thing drawn on a lane.
struct Item {
    lane: usize,
    start: u64,
    /// Exclusive (saturating at 2^64 - 1).
    end: u64,
    fill: String,
    stroke: String,
    label: String,
    title: String,
    fault: bool,
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn width_of(len: u64) -> f64 {
    let pages = (len.max(PAGE) / PAGE) as f64;
    26.0 + 11.0 * pages.log2()
}

/// The picture of `s`, with the fault bursts `faults` (each with the object whose ledger holds
/// it, or `ObjectId::UNCLAIMED`).
pub fn render(s: &Snapshot, faults: &[(ObjectId, Burst)]) -> String {
    let mut lanes: Vec<String> = vec!["host memory map".to_string()];
    let mut items: Vec<Item> = Vec::new();
    for r in &s.regions {
        let (fill, stroke) = match r.kind {
            RegionKind::Ram => ("#e8f5e1", "#6aa84f"),
            RegionKind::Daemon => ("#ffd966", "#b45f06"),
            RegionKind::Mmio => ("#d9d2e9", "#674ea7"),
        };
        items.push(Item {
            lane: 0,
            start: r.start.0,
            end: r.start.0.saturating_add(r.len),
            fill: fill.into(),
            stroke: stroke.into(),
            label: format!("{} {}", r.kind, r.name),
            title: format!("{} {}: {:#x}+{:#x}", r.kind, r.name, r.start.0, r.len),
            fault: false,
        });
    }
    // One lane per VM with a client: its assignment.
    let colour = |client: Option<smmuman_api::ClientId>| {
        let i = s
            .vms
            .iter()
            .position(|v| v.client.0 == client && client.is_some())
            .unwrap_or(VM_COLOURS.len() - 1);
        VM_COLOURS[i % VM_COLOURS.len()]
    };
    for (client, grants) in &s.grants {
        let name = s.vm_name(Some(*client));
        let lane = lanes.len();
        lanes.push(format!("{name}: assigned"));
        let (light, dark) = colour(Some(*client));
        for g in grants {
            items.push(Item {
                lane,
                start: g.start.0,
                end: g.start.0.saturating_add(g.len),
                fill: light.into(),
                stroke: dark.into(),
                label: format!("{} {}", name, g.kind),
                title: format!("{name} assigned {} {:#x}+{:#x}", g.kind, g.start.0, g.len),
                fault: false,
            });
        }
    }
    // One lane per device: the windows of the object holding it, and its faults.
    for d in &s.devices {
        let lane = lanes.len();
        let holder = if d.object.0 == 0 {
            "default deny".to_string()
        } else {
            format!("{} object {}", s.vm_name(d.client.0), d.object.0)
        };
        lanes.push(format!("{} sid {:#x}: {holder}", device_name(d), d.sid.0));
        let (light, dark) = colour(d.client.0);
        if let Some(o) = s.objects.iter().find(|o| o.row.object == d.object) {
            // Larger windows first: a small one over the same host memory stays visible.
            let mut windows = o.windows.clone();
            windows.sort_by_key(|w| core::cmp::Reverse(w.window.len()));
            for w in &windows {
                let (iova, pa, len) = (w.window.iova().0, w.window.pa().0, w.window.len());
                items.push(Item {
                    lane,
                    start: pa,
                    end: pa.saturating_add(len),
                    fill: dark.into(),
                    stroke: dark.into(),
                    label: format!("iova {iova:#x} {}", access(w.access)),
                    title: format!(
                        "{} window: iova {iova:#x} -> hpa {pa:#x} size {len:#x} {}",
                        device_name(d),
                        access(w.access)
                    ),
                    fault: false,
                });
            }
        }
        let _ = light;
        for (object, f) in faults.iter().filter(|(_, f)| f.sid == d.sid) {
            let start = f.addr.0 & !(PAGE - 1);
            let end = (f.addr_last.0 | (PAGE - 1))
                .saturating_add(1)
                .max(start + PAGE);
            let ledger = if *object == ObjectId::UNCLAIMED {
                "unclaimed".to_string()
            } else {
                format!("object {}", object.0)
            };
            items.push(Item {
                lane,
                start,
                end,
                fill: "#e53935".into(),
                stroke: "#7f0000".into(),
                label: format!("fault x{}", f.count),
                title: format!(
                    "fault: {} {} {} at {:#x}..{:#x}, {} record(s), {ledger}, seq {}..{}",
                    device_name(d),
                    match f.dir {
                        Some(iommu_core::Direction::Read) => "read",
                        Some(iommu_core::Direction::Write) => "write",
                        None => "access",
                    },
                    f.reason,
                    f.addr.0,
                    f.addr_last.0,
                    f.count,
                    f.seq,
                    f.seq_last
                ),
                fault: true,
            });
        }
    }
    draw(&lanes, &items, s)
}

/// Where each address edge goes on the axis.
struct Axis {
    /// (edge address, x) in address order.
    edges: Vec<(u64, f64)>,
    /// Stretches cut out, as (x of the cut).
    cuts: Vec<f64>,
    width: f64,
}

impl Axis {
    fn new(items: &[Item]) -> Axis {
        let mut edges: Vec<u64> = items.iter().flat_map(|i| [i.start, i.end]).collect();
        edges.sort_unstable();
        edges.dedup();
        let mut x = LEFT;
        let mut out = Vec::new();
        let mut cuts = Vec::new();
        for (k, &e) in edges.iter().enumerate() {
            out.push((e, x));
            if let Some(&next) = edges.get(k + 1) {
                let covered = items.iter().any(|i| i.start <= e && next <= i.end);
                if covered {
                    x += width_of(next - e);
                } else {
                    cuts.push(x + GAP_W / 2.0);
                    x += GAP_W;
                }
            }
        }
        Axis {
            edges: out,
            cuts,
            width: x,
        }
    }

    fn x(&self, addr: u64) -> f64 {
        match self.edges.binary_search_by_key(&addr, |(a, _)| *a) {
            Ok(i) => self.edges[i].1,
            Err(0) => LEFT,
            Err(i) => self.edges.get(i).map_or(self.width, |e| e.1),
        }
    }
}

fn draw(lanes: &[String], items: &[Item], s: &Snapshot) -> String {
    let axis = Axis::new(items);
    let axis_y = TOP + LANE * lanes.len() as f64 + 6.0;
    let legend_y = axis_y + 110.0;
    let width = (axis.width + 40.0).max(900.0);
    let height = legend_y + 60.0;
    let mut o = String::new();
    o.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"monospace\" font-size=\"11\">\n"
    ));
    let names: Vec<String> = s
        .vms
        .iter()
        .map(|v| {
            if v.name.is_empty() {
                s.vm_name(v.client.0)
            } else {
                v.name.to_string()
            }
        })
        .collect();
    o.push_str(&format!(
        "<title>smmuman host-physical memory map: {}</title>\n<rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"white\"/>\n",
        esc(&names.join(", "))
    ));
    o.push_str(&format!(
        "<text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">smmuman: host-physical memory map, VMs' assignments, devices' windows and faults</text>\n<text x=\"10\" y=\"38\" fill=\"#555\">VMs: {} · axis not to scale (width grows with log2 of size; unused stretches cut out)</text>\n",
        esc(&names.join(", "))
    ));
    for (i, name) in lanes.iter().enumerate() {
        let y = TOP + LANE * i as f64;
        if i % 2 == 1 {
            o.push_str(&format!(
                "<rect x=\"0\" y=\"{y:.1}\" width=\"{width:.0}\" height=\"{LANE}\" fill=\"#f6f6f6\"/>\n"
            ));
        }
        o.push_str(&format!(
            "<text x=\"10\" y=\"{:.1}\">{}</text>\n",
            y + LANE / 2.0 + 4.0,
            esc(name)
        ));
    }
    for it in items.iter().filter(|i| !i.fault) {
        rect(&mut o, &axis, it, false);
    }
    // Faults last, above the windows.
    for it in items.iter().filter(|i| i.fault) {
        rect(&mut o, &axis, it, true);
    }
    // The axis: a line, a tick and a label per edge, a zig-zag per cut.
    o.push_str(&format!(
        "<line x1=\"{LEFT}\" y1=\"{axis_y:.1}\" x2=\"{:.1}\" y2=\"{axis_y:.1}\" stroke=\"black\"/>\n",
        axis.width
    ));
    for (addr, x) in &axis.edges {
        o.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"2,3\"/>\n<text transform=\"translate({:.1},{:.1}) rotate(60)\" font-size=\"9\">{addr:#x}</text>\n",
            TOP,
            axis_y + 4.0,
            x - 2.0,
            axis_y + 10.0
        ));
    }
    for x in &axis.cuts {
        o.push_str(&format!(
            "<polyline points=\"{:.1},{:.1} {:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" fill=\"white\" stroke=\"black\"/>\n",
            x - 5.0,
            axis_y,
            x - 2.0,
            axis_y - 5.0,
            x + 2.0,
            axis_y + 5.0,
            x + 5.0,
            axis_y
        ));
    }
    o.push_str(&format!(
        "<text x=\"10\" y=\"{:.1}\">host-physical address</text>\n",
        axis_y + 4.0
    ));
    legend(&mut o, legend_y);
    o.push_str("</svg>\n");
    o
}

fn rect(o: &mut String, axis: &Axis, it: &Item, fault: bool) {
    let x0 = axis.x(it.start);
    let x1 = axis.x(it.end).max(x0 + 3.0);
    let (h, dy) = if fault { (BAR - 8.0, 4.0) } else { (BAR, 0.0) };
    let y = TOP + LANE * it.lane as f64 + (LANE - BAR) / 2.0 + dy;
    o.push_str(&format!(
        "<g><title>{}</title><rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\" stroke=\"{}\"{}/>",
        esc(&it.title),
        x1 - x0,
        it.fill,
        it.stroke,
        if fault { " rx=\"3\"" } else { "" }
    ));
    // A label where it fits (about 6.6 px per character).
    if (x1 - x0) > 6.6 * it.label.len() as f64 + 6.0 {
        let colour = if fault || it.fill.starts_with("#3") || it.fill.starts_with("#d9822b") {
            "white"
        } else {
            "black"
        };
        // Right-aligned: a smaller thing drawn over the start of a larger one leaves the
        // larger one's label readable.
        o.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\" text-anchor=\"end\">{}</text>",
            x1 - 3.0,
            y + h / 2.0 + 4.0,
            if fault { "white" } else { colour },
            esc(&it.label)
        ));
    }
    o.push_str("</g>\n");
}

fn legend(o: &mut String, y: f64) {
    let entries = [
        ("#e8f5e1", "#6aa84f", "RAM"),
        ("#ffd966", "#b45f06", "daemon's own memory (never mappable)"),
        ("#d9d2e9", "#674ea7", "MMIO"),
        (VM_COLOURS[0].0, VM_COLOURS[0].1, "a VM's assignment"),
        (
            VM_COLOURS[0].1,
            VM_COLOURS[0].1,
            "a device's window (at its HPA)",
        ),
        ("#e53935", "#7f0000", "refused DMA (at the address used)"),
    ];
    let mut x = 10.0;
    o.push_str(&format!(
        "<text x=\"10\" y=\"{:.1}\" font-weight=\"bold\">legend</text>\n",
        y - 8.0
    ));
    for (fill, stroke, what) in entries {
        o.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"18\" height=\"12\" fill=\"{fill}\" stroke=\"{stroke}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            x + 24.0,
            y + 10.0,
            esc(what)
        ));
        x += 34.0 + 6.6 * what.len() as f64;
    }
}
