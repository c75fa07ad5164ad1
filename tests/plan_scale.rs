//! One changed endpoint among many services: the plan holds exactly the
//! entries that changed (no timing here; docs/BENCHMARKS.md measures speed).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use edgeplane::apply::apply;
use edgeplane::compile_policy::PolicyNode;
use edgeplane::config::Settings;
use edgeplane::daemon::desired_state;
use edgeplane::maps::fake::FakeMaps;
use edgeplane::maps::layout::SvcKey;
use edgeplane::maps::{Entries, MapId};
use edgeplane::model::load_dirs;
use edgeplane::plan::{Step, plan};
use edgeplane::source::LoadLimits;

const SERVICES: u32 = 2000;

fn ip(base: [u8; 2], i: u32) -> String {
    format!("{}.{}.{}.{}", base[0], base[1], (i >> 8) & 0xff, i & 0xff)
}

fn write_services(dir: &Path, changed: Option<u32>) {
    let mut svcs = String::new();
    let mut slices = String::new();
    for i in 0..SERVICES {
        let vip = ip([198, 19], i + 1);
        let (a, mut b) = (ip([198, 18], 2 * i + 256), ip([198, 18], 2 * i + 257));
        if changed == Some(i) {
            b = "198.18.250.250".to_string();
        }
        write!(
            svcs,
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: bench\nspec:\n  clusterIP: {vip}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
        )
        .expect("fmt");
        write!(
            slices,
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: svc-{i}-x\n  namespace: bench\n  labels:\n    kubernetes.io/service-name: svc-{i}\naddressType: IPv4\nendpoints:\n- addresses: [{a}]\n  conditions: {{ready: true}}\n- addresses: [{b}]\n  conditions: {{ready: true}}\nports:\n- name: http\n  port: 8080\n  protocol: TCP\n"
        )
        .expect("fmt");
    }
    std::fs::write(dir.join("services.yaml"), svcs).expect("write");
    std::fs::write(dir.join("endpointslices.yaml"), slices).expect("write");
}

#[test]
fn one_changed_endpoint_plans_exactly_its_entries() {
    let dir = std::env::temp_dir().join(format!("ep-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let settings = Settings { config_dir: dir.clone(), ..Settings::default() };

    write_services(&dir, None);
    let loaded = load_dirs(std::slice::from_ref(&dir), &LoadLimits::default()).expect("load");
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let empty: BTreeMap<MapId, Entries> = BTreeMap::new();
    let first = desired_state(&loaded, &settings, &PolicyNode::default(), &empty, 0);
    let mut live = FakeMaps::new();
    apply(&plan(&first.maps, &empty), &mut live).expect("apply");
    let live_maps: BTreeMap<MapId, Entries> = first.maps.clone();
    assert_eq!(live.entries(MapId::Services).len(), (SERVICES * 3) as usize);

    write_services(&dir, Some(1234));
    let loaded = load_dirs(std::slice::from_ref(&dir), &LoadLimits::default()).expect("load");
    let second = desired_state(&loaded, &settings, &PolicyNode::default(), &live_maps, 0);
    let p = plan(&second.maps, &live_maps);
    let rendered: Vec<String> = p.steps.iter().map(ToString::to_string).collect();
    // add the new backend, point the one slot at it, delete the old backend
    assert_eq!(p.steps.len(), 3, "{rendered:#?}");
    let vip_1234 = ip([198, 19], 1235);
    for step in &p.steps {
        match step {
            Step::Upsert { map: MapId::Services, key, .. } => {
                let k = SvcKey::from_bytes(key).expect("svc key");
                assert_eq!(k.vip().to_string(), vip_1234);
                assert_ne!(k.slot, 0, "the count did not change");
            }
            Step::Upsert { map: MapId::Backends, prev: None, .. } | Step::Delete { map: MapId::Backends, .. } => {}
            other => panic!("unexpected step {other}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
