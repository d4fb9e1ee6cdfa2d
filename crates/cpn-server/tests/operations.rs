//! South-bound operations (I2) and `/metrics` against a real server whose embedded agent
//! registers this machine as the only node of site `local`.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.unwrap_or(&self.token));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("response body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, v) = self.send(reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body), None)
            .await
    }

    async fn op(&self, body: Value) -> (u16, Value) {
        self.post("/api/v1/operations", body).await
    }

    async fn task(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/tasks/{id}")).await
    }

    async fn wait_task(&self, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let t = self.task(id).await;
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < until, "task {id} never {what}: {t}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Processes running `argv` (the program by its file name: the agent resolves it on PATH).
fn processes_running(argv: &[&str]) -> usize {
    let matches = |cmdline: Vec<u8>| {
        let parts: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        parts.len() == argv.len()
            && parts[0].rsplit('/').next() == Some(argv[0])
            && parts[1..].iter().zip(&argv[1..]).all(|(a, b)| a == b)
    };
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(matches))
                .count()
        })
        .unwrap_or(0)
}

fn error_message(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn recorded_id(v: &Value) -> String {
    let m = error_message(v);
    let id = m
        .rsplit_once("(recorded as operation ")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("message does not name the record: {m:?}"));
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operations_on_the_local_node() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = cpn_server::start(cpn_server::ServeConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        load_demo: false,
        sim_data_dir: None,
        runtime: Default::default(),
        accounts: Default::default(),
        tls: cpn_server::TlsSetting::Off,
        max_connections: cpn_server::DEFAULT_MAX_CONNECTIONS,
        notify: Default::default(),
    })
    .await?;
    // An agent in-process, as `cpn serve` composes its local agent, registers this machine.
    server.ensure_site("local").await?;
    let state_dir = dir.path().join("agent");
    let mut agent = cpn_agent::AgentConfig::new(server.url.clone(), "local", state_dir);
    agent.join_token = server
        .in_process_agent_token("local", None, "the test's agent")
        .await?;
    let agent = cpn_agent::spawn(agent)?;
    server.stop_with(agent.stop());
    let api = Api {
        base: format!("http://{}", server.addr),
        token: server.admin_token()?,
        http: reqwest::Client::new(),
    };

    let until = Instant::now() + Duration::from_secs(30);
    let node = loop {
        let nodes = api.get("/api/v1/nodes").await;
        if let Some(n) = nodes.as_array().and_then(|a| a.first())
            && n["state"] == "ready"
        {
            break n.clone();
        }
        assert!(Instant::now() < until, "the local agent never registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let node_id = node["id"].as_str().unwrap().to_string();
    let node_name = node["name"].as_str().unwrap().to_string();
    let key = format!("local/{node_name}");
    let cores = node["capacity"]["cpu_cores"].as_f64().unwrap();
    let target = json!({"kind": "node", "name": key});

    // Input errors: 422 with the field, not recorded.
    let (status, v) = api.op(json!({"op": "allocate", "target": target})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["field"], "resources");
    let (status, v) = api.op(json!({"op": "release"})).await;
    assert_eq!(
        (status, v["error"]["field"].clone()),
        (422, json!("allocation"))
    );
    let (status, v) = api
        .op(json!({"op": "reclaim", "target": {"kind": "resource", "name": "x"}}))
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(error_message(&v).contains("not supported for resources; use a node"));
    assert_eq!(api.get("/api/v1/operations").await, json!([]));

    // More CPU than the node has: 409, recorded as failed.
    let (status, v) = api
        .op(json!({"op": "allocate", "target": target,
                   "resources": {"cpu_cores": cores + 1.0, "memory_gib": 0.5}}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "unschedulable");
    let failed = recorded_id(&v);
    let ops = api.get("/api/v1/operations").await;
    assert_eq!(ops[0]["id"], json!(failed));
    assert_eq!(ops[0]["outcome"], "failed");
    assert_eq!(ops[0]["op"], "allocate");
    let one = api.get(&format!("/api/v1/operations/{failed}")).await;
    let steps: Vec<&str> = one["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["resolve target", "check capacity", "fail"]);
    let (status, _) = api
        .send(
            reqwest::Method::GET,
            "/api/v1/operations/op-nope",
            None,
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Allocate one core: held, listed, counted on the node.
    let (status, v) = api
        .op(json!({"op": "allocate", "target": target,
                   "resources": {"cpu_cores": 1, "memory_gib": 0.25}}))
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["outcome"], "succeeded");
    let alloc = v["allocation"].as_str().unwrap().to_string();
    let active = api.get("/api/v1/allocations?active=true").await;
    assert_eq!(active.as_array().unwrap().len(), 1, "{active}");
    assert_eq!(active[0]["id"], json!(alloc));
    assert_eq!(active[0]["node"], json!(node_name));
    assert_eq!(active[0]["node_id"], json!(node_id));
    let n = api.get(&format!("/api/v1/nodes/{node_id}")).await;
    assert!(n["allocated"]["cpu_cores"].as_f64().unwrap() >= 1.0, "{n}");

    // Adjust: more than the node has fails; half a core works.
    let (status, v) = api
        .op(json!({"op": "adjust", "allocation": alloc,
                   "resources": {"cpu_cores": cores + 1.0, "memory_gib": 0.25}}))
        .await;
    assert_eq!(status, 409, "{v}");
    recorded_id(&v);
    let (status, v) = api
        .op(json!({"op": "adjust", "allocation": alloc,
                   "resources": {"cpu_cores": 0.5, "memory_gib": 0.25}}))
        .await;
    assert_eq!(status, 201, "{v}");
    let active = api.get("/api/v1/allocations?active=true").await;
    assert_eq!(active[0]["resources"]["cpu_cores"], json!(0.5));

    // Release, then release again: the second is recorded as failed.
    let (status, v) = api.op(json!({"op": "release", "allocation": alloc})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["target"]["kind"], "node");
    let (status, v) = api.op(json!({"op": "release", "allocation": alloc})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "invalid_state");
    let again = recorded_id(&v);
    assert_eq!(
        api.get(&format!("/api/v1/operations/{again}")).await["outcome"],
        "failed"
    );
    assert_eq!(api.get("/api/v1/allocations?active=true").await, json!([]));
    let released = api.get("/api/v1/allocations?active=false").await;
    assert_eq!(released[0]["id"], json!(alloc));
    assert!(released[0]["released_at"].is_string());

    // Cordon: a new task stays pending; uncordon: it runs.
    let (status, v) = api.op(json!({"op": "isolate", "target": target})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        api.get(&format!("/api/v1/nodes/{node_id}")).await["cordoned"],
        true
    );
    let (status, sub) = api
        .post("/api/v1/tasks", json!({"name": "x", "command": ["true"]}))
        .await;
    assert_eq!(status, 201, "{sub}");
    let quick = sub["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api.task(&quick).await["state"], "pending");
    let (status, v) = api
        .op(json!({"op": "isolate", "target": target, "enable": false}))
        .await;
    assert_eq!(status, 201, "{v}");
    api.wait_task(&quick, "succeeded", |t| t["state"] == "succeeded")
        .await;

    // Reclaim a node running a long task: evicted, killed, bound again (attempt 2).
    let argv = ["sleep", "30.0417"];
    let (status, sub) = api
        .post("/api/v1/tasks", json!({"name": "long", "command": argv}))
        .await;
    assert_eq!(status, 201, "{sub}");
    let long = sub["id"].as_str().unwrap().to_string();
    api.wait_task(&long, "ran", |t| t["state"] == "running")
        .await;
    let until = Instant::now() + Duration::from_secs(10);
    while processes_running(&argv) != 1 {
        assert!(
            Instant::now() < until,
            "the first attempt's process never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, v) = api
        .op(json!({"op": "reclaim", "target": target, "reason": "maintenance"}))
        .await;
    assert_eq!(status, 201, "{v}");
    let steps: Vec<String> = v["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap().to_string())
        .collect();
    assert!(steps.contains(&format!("evict task {long}")), "{steps:?}");
    assert!(
        steps.iter().any(|s| s.starts_with("stop attempt ")),
        "{steps:?}"
    );
    let t = api
        .wait_task(&long, "bound again", |t| {
            t["attempt"] == 2 && (t["state"] == "running" || t["state"] == "scheduled")
        })
        .await;
    assert!(
        t["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["reason"].as_str().is_some_and(|r| r.contains("evicted"))),
        "{t}"
    );
    // The first attempt's process is killed; only the second one's runs.
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let t = api.task(&long).await;
        if t["state"] == "running" && processes_running(&argv) == 1 {
            break;
        }
        assert!(
            Instant::now() < until,
            "expected exactly one {argv:?} process: {} ({t})",
            processes_running(&argv)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = api
        .post(&format!("/api/v1/tasks/{long}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200);

    // Occupy and give back.
    let (status, v) = api.op(json!({"op": "occupy", "target": target})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(
        api.get(&format!("/api/v1/nodes/{node_id}")).await["occupied_by"],
        v["tenant"]
    );
    let (status, v) = api
        .op(json!({"op": "occupy", "target": target, "enable": false}))
        .await;
    assert_eq!(status, 201, "{v}");
    assert!(api.get(&format!("/api/v1/nodes/{node_id}")).await["occupied_by"].is_null());

    // An unknown node: 404, still recorded.
    let (status, v) = api
        .op(json!({"op": "isolate", "target": {"kind": "node", "name": "local/nope"}}))
        .await;
    assert_eq!(status, 404, "{v}");
    recorded_id(&v);

    // Operations are announced as events.
    let events = api
        .get("/api/v1/events/log?types=operation&limit=1000")
        .await;
    assert!(events.as_array().unwrap().len() >= 8, "{events}");

    // Non-operators may not operate, and see only their tenant's records.
    let (status, v) = api.post("/api/v1/tenants", json!({"name": "acme"})).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api
        .post(
            "/api/v1/users",
            json!({"username": "alice", "password": "alice-secret", "tenant": "acme", "role": "user"}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, login) = api
        .post(
            "/api/v1/auth/login",
            json!({"username": "alice", "password": "alice-secret"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let alice = login["token"].as_str().unwrap().to_string();
    let (status, v) = api
        .send(
            reqwest::Method::POST,
            "/api/v1/operations",
            Some(json!({"op": "isolate", "target": target})),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = api
        .send(
            reqwest::Method::GET,
            "/api/v1/operations",
            None,
            Some(&alice),
        )
        .await;
    assert_eq!((status, v), (200, json!([])));

    // Metrics need an operator (or a metrics:read key): anonymous and plain users are
    // refused; then the text format line by line.
    let resp = reqwest::get(format!("{}/metrics", api.base)).await?;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&alice)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 403);
    let resp = reqwest::Client::new()
        .get(format!("{}/metrics", api.base))
        .bearer_auth(&api.token)
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str()?.to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await?;
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_string(), value);
    }
    assert!(samples[r#"cpn_tasks{state="succeeded"}"#] >= 1.0, "{text}");
    assert_eq!(samples[r#"cpn_tasks{state="lost"}"#], 0.0);
    assert_eq!(samples[r#"cpn_nodes{state="ready"}"#], 1.0);
    assert!(samples["cpn_tasks_submitted_total"] >= 2.0);
    assert!(samples["cpn_events_last_id"] >= 1.0);
    let idle = format!(r#"cpn_node_idle_rate{{node="{node_name}",site="local"}}"#);
    assert!(samples.contains_key(&idle), "{text}");

    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_registry_resources() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = cpn_server::start(cpn_server::ServeConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse()?,
        load_demo: false,
        sim_data_dir: None,
        runtime: Default::default(),
        accounts: Default::default(),
        tls: cpn_server::TlsSetting::Off,
        max_connections: cpn_server::DEFAULT_MAX_CONNECTIONS,
        notify: Default::default(),
    })
    .await?;
    let api = Api {
        base: format!("http://{}", server.addr),
        token: server.admin_token()?,
        http: reqwest::Client::new(),
    };
    let (status, v) = api
        .post(
            "/api/v1/sites",
            json!({"name": "alpha", "visibility": "public",
                   "spec": {"region": "Ningxia", "supplier": "test", "location": {"lat": 37.5, "lon": 105.2}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    // Eight A100s: one synthesized node, alpha-a100-001.
    let (status, v) = api
        .post(
            "/api/v1/resources",
            json!({"name": "alpha-a100", "spec": {"site": "alpha", "type": "compute", "compute": {
                "supply_mode": "bare_metal", "chip_type": "gpu", "architecture": "ampere", "model": "A100",
                "count": 8, "unit_price": 5.0, "power_watts": 400}}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let target = json!({"kind": "resource", "name": "alpha-a100"});
    let half = json!({"task": {"name": "t", "chip": "gpu", "resources": {"cpu_cores": 8, "memory_gib": 32, "gpus": 4}}});

    // Isolated: nothing is placed on it.
    let feasible = |v: &Value| v["decision"]["sites"][0]["feasible"].clone();
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(true)), "{v}");
    let (status, v) = api.op(json!({"op": "isolate", "target": target})).await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(false)), "{v}");
    let (status, v) = api
        .op(json!({"op": "isolate", "target": target, "enable": false}))
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(true)), "{v}");

    // An allocation of 6 GPUs leaves room for no 4-GPU placement; shrunk to 4, one fits.
    let (status, v) = api
        .op(json!({"op": "allocate", "target": target,
                   "resources": {"cpu_cores": 8, "memory_gib": 32, "gpus": 6}}))
        .await;
    assert_eq!(status, 201, "{v}");
    let alloc = v["allocation"].as_str().unwrap().to_string();
    let listed = api.get("/api/v1/allocations?active=true").await;
    assert_eq!(listed[0]["node"], "alpha-a100", "{listed}");
    assert!(
        listed[0]["node_id"]
            .as_str()
            .unwrap()
            .starts_with("resource:")
    );
    // The planning snapshot (explain, dry-run, plans) takes resource allocations out;
    // decisions (`POST /schedule`) are placed on live nodes only, and this site has none.
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(false)), "{v}");
    let (status, v) = api.post("/api/v1/schedule", half.clone()).await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_live_node"),
        "{v}"
    );
    let (status, v) = api
        .op(json!({"op": "adjust", "allocation": alloc,
                   "resources": {"cpu_cores": 8, "memory_gib": 32, "gpus": 9}}))
        .await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = api
        .op(json!({"op": "adjust", "allocation": alloc,
                   "resources": {"cpu_cores": 8, "memory_gib": 32, "gpus": 4}}))
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(true)), "{v}");
    let (status, v) = api
        .op(json!({"op": "allocate", "target": target,
                   "resources": {"cpu_cores": 8, "memory_gib": 32, "gpus": 4}}))
        .await;
    assert_eq!(status, 201, "{v}");
    // Now full: a second allocation does not fit; released, the capacity comes back.
    let (status, v) = api
        .op(json!({"op": "allocate", "target": target,
                   "resources": {"cpu_cores": 1, "memory_gib": 1, "gpus": 1}}))
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "unschedulable");
    let (status, v) = api.op(json!({"op": "release", "allocation": alloc})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["target"]["kind"], "resource");
    let (status, v) = api.post("/api/v1/schedule/explain", half.clone()).await;
    assert_eq!((status, feasible(&v)), (200, json!(true)), "{v}");

    let doc = api.get("/api/v1/openapi.json").await;
    for path in [
        "/api/v1/operations",
        "/api/v1/operations/{id}",
        "/api/v1/allocations",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    for schema in ["OperationRequest", "OperationView", "AllocationView"] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "openapi lacks {schema}"
        );
    }

    server.stop().await?;
    Ok(())
}
