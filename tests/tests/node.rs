//! Smoke trials of the real node: each needs running pods, real packets or a real
//! enforcer, so none can pass against an API-only control plane. After them the harness
//! tears the node down and checks, as one more trial, that the host is as before.
#![forbid(unsafe_code)]

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::Api;
use riposte::enforcer::{Enforcement, known_enforcer};
use riposte_e2e::node::{self, Cluster, Protocol, Reach, SERVER_TCP_PORTS, SERVER_UDP_PORT};
use serde_json::json;

/// How long kube-router may take to apply or lift a policy: seconds, not its resync period.
const ENFORCEMENT: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    node::run_trials(vec![
        node::trial(
            "pod_runs_and_its_log_is_read_through_the_apiserver",
            pod_runs_and_its_log_is_read_through_the_apiserver,
        ),
        node::trial("exec_runs_in_the_container", exec_runs_in_the_container),
        node::trial("pods_reach_each_other_over_tcp_and_udp", pods_reach_each_other_over_tcp_and_udp),
        node::trial("deny_all_ingress_cuts_tcp_and_udp_until_removed", deny_all_ingress_cuts_tcp_and_udp_until_removed),
        node::trial("pods_reach_the_apiserver", pods_reach_the_apiserver),
        node::trial("kube_router_is_found_by_enforcer_detection_and_can_stop", kube_router_is_found_and_can_stop),
        node::trial("debian_image_runs_bash_curl_python3_and_netcat", debian_image_runs_bash_curl_python3_and_netcat),
    ])
}

async fn pod_runs_and_its_log_is_read_through_the_apiserver(cluster: &Cluster) {
    let ns = "node-logs";
    cluster.namespace(ns).await;
    let busybox = cluster.images.busybox.clone();
    cluster
        .run_pod(ns, "talker", &[], &busybox, &["sh", "-c", "echo riposte-log-line $((6 * 7)); exec sleep 86400"])
        .await;
    // The kubelet serves the log; the apiserver fetches it with its client certificate.
    let logs = cluster.kubectl_ok(&["logs", "-n", ns, "talker"]);
    assert_eq!(logs.trim(), "riposte-log-line 42", "the container's log, read through the apiserver");
}

async fn exec_runs_in_the_container(cluster: &Cluster) {
    let ns = "node-exec";
    cluster.namespace(ns).await;
    cluster.client_pod(ns, "shell", &[]).await;
    let out = cluster.exec(ns, "shell", &["sh", "-c", "cat /etc/hostname; id -u; echo $((1 + 2)) >&2; exit 3"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "shell\n0\n", "stdout of the command in the pod");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().next(), Some("3"), "stderr of the command in the pod");
    assert_eq!(out.status.code(), Some(3), "kubectl exec passes the command's exit status on");
}

async fn pods_reach_each_other_over_tcp_and_udp(cluster: &Cluster) {
    let ns = "node-net";
    cluster.namespace(ns).await;
    cluster.server_pod(ns, "server", &[("app", "server")]).await;
    cluster.client_pod(ns, "client", &[]).await;
    let server = cluster.pod_ip(ns, "server").await;
    for port in SERVER_TCP_PORTS {
        assert_eq!(
            cluster.probe(ns, "client", &format!("{server}:{port}"), Protocol::Tcp),
            Reach::Connected(format!("riposte tcp:{port}")),
            "TCP to the server's port {port}"
        );
    }
    assert_eq!(
        cluster.probe(ns, "client", &format!("{server}:{SERVER_UDP_PORT}"), Protocol::Udp),
        Reach::Connected(format!("riposte udp:{SERVER_UDP_PORT}")),
        "a UDP exchange with the server"
    );
    // A port nobody listens on is refused, not timed out: the probe tells the two apart.
    assert_eq!(cluster.probe(ns, "client", &format!("{server}:7070"), Protocol::Tcp), Reach::Refused);
    let logs = cluster.kubectl_ok(&["logs", "-n", ns, "server"]);
    assert!(logs.contains(&format!("udp:{SERVER_UDP_PORT} from")), "the server saw the exchange:\n{logs}");
}

async fn deny_all_ingress_cuts_tcp_and_udp_until_removed(cluster: &Cluster) {
    let ns = "node-policy";
    cluster.namespace(ns).await;
    cluster.server_pod(ns, "server", &[("app", "server")]).await;
    cluster.client_pod(ns, "client", &[]).await;
    let server = cluster.pod_ip(ns, "server").await;
    let tcp = format!("{server}:{}", SERVER_TCP_PORTS[0]);
    let udp = format!("{server}:{SERVER_UDP_PORT}");
    assert!(cluster.probe(ns, "client", &tcp, Protocol::Tcp).connected(), "TCP before any policy");

    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "deny-ingress", "namespace": ns },
        "spec": { "podSelector": { "matchLabels": { "app": "server" } }, "policyTypes": ["Ingress"] },
    });
    cluster.apply(&policy);
    let (took, reach) = cluster
        .probe_until(ns, "client", &tcp, Protocol::Tcp, ENFORCEMENT, |r| !r.connected())
        .await
        .unwrap_or_else(|last| panic!("TCP still {last:?} {ENFORCEMENT:?} after a deny-all ingress policy"));
    eprintln!("deny-all ingress: TCP {reach:?} {:.1} s after kubectl apply", took.as_secs_f64());
    assert!(matches!(reach, Reach::Refused | Reach::TimedOut));
    assert!(!cluster.probe(ns, "client", &udp, Protocol::Udp).connected(), "UDP under a deny-all ingress policy");
    // Only the server's ingress is cut: its own connections go out and their answers come
    // back (here a reset, as nothing listens on the client's port 7070).
    let client = cluster.pod_ip(ns, "client").await;
    assert_eq!(cluster.probe(ns, "server", &format!("{client}:7070"), Protocol::Tcp), Reach::Refused);

    cluster.kubectl_ok(&["delete", "networkpolicy", "-n", ns, "deny-ingress"]);
    let (took, _) = cluster
        .probe_until(ns, "client", &tcp, Protocol::Tcp, ENFORCEMENT, Reach::connected)
        .await
        .unwrap_or_else(|last| panic!("TCP still {last:?} {ENFORCEMENT:?} after the policy was deleted"));
    eprintln!("deny-all ingress removed: TCP connected {:.1} s after kubectl delete", took.as_secs_f64());
    assert!(cluster.probe(ns, "client", &udp, Protocol::Udp).connected(), "UDP once the policy is gone");
}

async fn pods_reach_the_apiserver(cluster: &Cluster) {
    let ns = "node-apiserver";
    cluster.namespace(ns).await;
    cluster.client_pod(ns, "client", &[]).await;
    let server = cluster.plane().server().trim_start_matches("https://").to_owned();
    // Directly, and through the `kubernetes` Service that in-cluster clients use.
    for target in [server, format!("{}:443", node::KUBERNETES_SERVICE_IP)] {
        assert!(
            cluster.probe(ns, "client", &target, Protocol::Tcp).connected(),
            "a pod connects to the apiserver at {target}"
        );
    }
}

async fn kube_router_is_found_and_can_stop(cluster: &Cluster) {
    let daemonsets: Api<DaemonSet> = Api::all(cluster.client.clone());
    let running = Enforcement::Running("kube-system/kube-router".into());
    // The DaemonSet controller counts ready pods a moment after they are ready.
    let detected = |wanted: Enforcement| {
        let daemonsets = daemonsets.clone();
        async move {
            riposte_e2e::eventually(&format!("enforcer detection to say {wanted:?}"), || async {
                let found = known_enforcer(&daemonsets.list(&Default::default()).await.ok()?.items);
                (found == wanted).then_some(())
            })
            .await
        }
    };
    detected(running.clone()).await;

    cluster.suspend_kube_router().await;
    detected(Enforcement::NotRunning("kube-system/kube-router".into())).await;
    cluster.stop_kube_router().await;
    detected(Enforcement::Unknown).await;

    cluster.start_kube_router().await;
    detected(running).await;
    // Started again, it enforces again: a new policy takes effect.
    let ns = "node-restart";
    cluster.namespace(ns).await;
    cluster.server_pod(ns, "server", &[("app", "server")]).await;
    cluster.client_pod(ns, "client", &[]).await;
    let tcp = format!("{}:{}", cluster.pod_ip(ns, "server").await, SERVER_TCP_PORTS[1]);
    assert!(cluster.probe(ns, "client", &tcp, Protocol::Tcp).connected());
    let policy = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "deny-ingress", "namespace": ns },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress"] },
    });
    cluster.apply(&policy);
    cluster
        .probe_until(ns, "client", &tcp, Protocol::Tcp, ENFORCEMENT, |r| !r.connected())
        .await
        .unwrap_or_else(|last| panic!("TCP still {last:?} after a policy, kube-router restarted"));
}

async fn debian_image_runs_bash_curl_python3_and_netcat(cluster: &Cluster) {
    let ns = "node-debian";
    cluster.namespace(ns).await;
    cluster.server_pod(ns, "server", &[]).await;
    let image = cluster.debian_image().await;
    cluster.run_pod(ns, "debian", &[], &image, &["sleep", "infinity"]).await;
    let server = cluster.pod_ip(ns, "server").await;
    // The tools of the attack scenarios, each doing its job: against the server pod, and
    // curl against the apiserver through the `kubernetes` Service.
    let script = format!(
        "set -e; echo \"$BASH_VERSION\" | cut -d. -f1; \
         python3 -c 'import socket; s = socket.create_connection((\"{server}\", 8080), 2); print(s.recv(64).decode().strip())'; \
         echo probe | nc -u -w 2 {server} 5353; \
         curl -sSk --max-time 5 https://{}/version | python3 -c 'import json, sys; print(json.load(sys.stdin)[\"gitVersion\"])'",
        node::KUBERNETES_SERVICE_IP
    );
    let out = cluster.exec(ns, "debian", &["bash", "-c", &script]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the tools in {image}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["5", "riposte tcp:8080", "riposte udp:5353", riposte::local::KUBERNETES_VERSION],
        "bash, python3, netcat and curl in {image}"
    );
}
