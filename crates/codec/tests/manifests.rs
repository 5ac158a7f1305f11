//! Real-world manifests through the public API: decoding into typed values,
//! round trips through YAML and JSON, and the errors a user sees.

// The helpers below are test code too: a panic is how they report failure.
#![allow(clippy::unwrap_used)]

use moor_api::apps::v1::Deployment;
use moor_api::core::v1::{ConfigMap, Pod, Secret, Service};
use moor_api::meta::v1::int_or_string::Value as IntOrString;
use moor_codec::{
    DecodeOptions, Document, decode_as, decode_documents, decode_documents_with,
    list_to_json_string, list_to_yaml, to_dynamic, to_json, to_json_string, to_yaml,
};

/// Deployment, Service and ConfigMap as in Kubernetes' documentation.
const APP: &str = r#"
# The web tier.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - name: http
          containerPort: 80
        env:
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: LOG_LEVEL
          valueFrom:
            configMapKeyRef:
              name: app-config
              key: log_level
        resources:
          limits:
            cpu: 1
            memory: 128Mi
          requests:
            cpu: 500m
            memory: 64
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 5
        volumeMounts:
        - name: cache
          mountPath: /cache
      volumes:
      - name: cache
        emptyDir: {}
      - name: scratch
        emptyDir:
          sizeLimit: 1
---
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app: nginx
  ports:
    - name: http
      protocol: TCP
      port: 80
      targetPort: http
    - name: metrics
      port: 9376
      targetPort: 9376
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  log_level: debug
  game.properties: |
    enemy.types=aliens,monsters
    player.maximum-lives=5
"#;

fn decode(text: &str) -> Vec<Document> {
    decode_documents(text).unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> String {
    decode_documents(text).unwrap_err().to_string()
}

fn typed(docs: &[Document]) -> (Deployment, Service, ConfigMap) {
    assert_eq!(docs.len(), 3);
    (
        decode_as(&docs[0]).unwrap(),
        decode_as(&docs[1]).unwrap(),
        decode_as(&docs[2]).unwrap(),
    )
}

#[test]
fn app_manifest_decodes_to_typed_values() {
    let docs = decode(APP);
    assert_eq!(
        docs.iter()
            .map(|d| (d.index, d.info.kind.as_str()))
            .collect::<Vec<_>>(),
        [(1, "Deployment"), (2, "Service"), (3, "ConfigMap")]
    );
    let (deploy, svc, cm) = typed(&docs);

    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let rolling = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(
        rolling.max_surge.unwrap().value,
        Some(IntOrString::StrVal("25%".into()))
    );
    assert_eq!(
        rolling.max_unavailable.unwrap().value,
        Some(IntOrString::IntVal(1))
    );
    let pod = spec.template.unwrap().spec.unwrap();
    let c = &pod.containers[0];
    assert_eq!(
        (c.name.as_str(), c.image.as_str()),
        ("nginx", "nginx:1.14.2")
    );
    assert_eq!(c.ports[0].container_port, 80);
    let env = &c.env;
    assert_eq!(
        env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "status.podIP"
    );
    let cm_ref = env[1]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (cm_ref.name.as_str(), cm_ref.key.as_str()),
        ("app-config", "log_level")
    );
    let resources = c.resources.as_ref().unwrap();
    assert_eq!(resources.limits["cpu"], "1");
    assert_eq!(resources.limits["memory"], "128Mi");
    assert_eq!(resources.requests["memory"], "64");
    let probe = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        probe
            .http_get
            .as_ref()
            .unwrap()
            .port
            .as_ref()
            .unwrap()
            .value,
        Some(IntOrString::StrVal("http".into()))
    );
    assert!(pod.volumes[0].empty_dir.is_some(), "emptyDir: {{}} is kept");
    assert_eq!(pod.volumes[1].empty_dir.as_ref().unwrap().size_limit, "1");

    let ports = svc.spec.unwrap().ports;
    assert_eq!(
        ports[0].target_port.as_ref().unwrap().value,
        Some(IntOrString::StrVal("http".into()))
    );
    assert_eq!(
        ports[1].target_port.as_ref().unwrap().value,
        Some(IntOrString::IntVal(9376))
    );
    assert_eq!(
        cm.data["game.properties"],
        "enemy.types=aliens,monsters\nplayer.maximum-lives=5\n"
    );
}

#[test]
fn app_manifest_round_trips_through_yaml_and_json() {
    let docs = decode(APP);
    let expected = typed(&docs);
    let yaml: Vec<String> = docs.iter().map(|d| to_yaml(&d.message).unwrap()).collect();
    assert_eq!(typed(&decode(&yaml.join("---\n"))), expected);
    let json: String = docs
        .iter()
        .map(|d| to_json_string(&d.message).unwrap())
        .collect();
    assert_eq!(typed(&decode(&json)), expected);

    let messages: Vec<_> = docs.into_iter().map(|d| d.message).collect();
    let list = decode(&list_to_yaml(&messages).unwrap());
    assert_eq!(
        list.iter().map(|d| (d.index, d.item)).collect::<Vec<_>>(),
        [(1, Some(0)), (1, Some(1)), (1, Some(2))]
    );
    assert_eq!(typed(&list), expected);
    assert_eq!(
        typed(&decode(&list_to_json_string(&messages).unwrap())),
        expected
    );

    // Kubernetes' spellings on the way out.
    let service = to_yaml(&messages[1]).unwrap();
    assert!(
        service.contains("  - name: http\n    protocol: TCP\n    port: 80\n    targetPort: http\n"),
        "{service}"
    );
    assert!(service.contains("targetPort: 9376\n"), "{service}");
    let deploy = to_yaml(&messages[0]).unwrap();
    assert!(deploy.starts_with(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nginx-deployment\n"
    ));
    assert!(
        deploy.contains("maxUnavailable: 1\n      maxSurge: 25%\n"),
        "{deploy}"
    );
    assert!(deploy.contains("emptyDir: {}\n"), "{deploy}");
}

#[test]
fn server_fields_round_trip_as_kubernetes_prints_them() {
    let text = r#"{
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "generation": 2, "resourceVersion": "17",
                     "creationTimestamp": "2026-11-26T22:43:35Z"},
        "status": {"phase": "Running", "podIP": "10.0.0.5", "startTime": "2026-11-26T22:43:36.500Z"}
    }"#;
    let docs = decode(text);
    let pod: Pod = decode_as(&docs[0]).unwrap();
    assert_eq!(pod.metadata.as_ref().unwrap().generation, 2);
    assert_eq!(pod.status.as_ref().unwrap().pod_ip, "10.0.0.5");
    let json = to_json(&pod).unwrap();
    assert_eq!(json["metadata"]["generation"], 2);
    assert_eq!(
        json["metadata"]["creationTimestamp"],
        "2026-11-26T22:43:35Z"
    );
    assert_eq!(json["status"]["startTime"], "2026-11-26T22:43:36.500Z");
    let again: Pod = decode_as(&decode(&to_yaml(&to_dynamic(&pod).unwrap()).unwrap())[0]).unwrap();
    assert_eq!(again, pod);
}

#[test]
fn secret_bytes_round_trip_as_base64() {
    let docs = decode(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  password: aHVudGVyMg==\n",
    );
    let secret: Secret = decode_as(&docs[0]).unwrap();
    assert_eq!(secret.data["password"], b"hunter2");
    assert!(
        to_yaml(&docs[0].message)
            .unwrap()
            .contains("password: aHVudGVyMg==\n")
    );
}

#[test]
fn unknown_field_in_a_list_names_its_path() {
    let text = APP.replacen(
        "        image: nginx:1.14.2\n",
        "        image: nginx:1.14.2\n        imagePullPolicyy: Always\n",
        1,
    );
    let text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: web}}\n---\n{text}");
    assert_eq!(
        error(&text),
        "document 2: spec.template.spec.containers[0].imagePullPolicyy: unknown field"
    );
    let relaxed = decode_documents_with(&text, &DecodeOptions::relaxed()).unwrap();
    assert_eq!(relaxed.len(), 4);
}

#[test]
fn wrong_type_names_its_path() {
    let text = APP.replacen("replicas: 3", "replicas: three", 1);
    assert_eq!(
        error(&text),
        r#"document 1: spec.replicas: invalid type: string "three", expected an integer"#
    );
    let text = APP.replacen("containerPort: 80", "containerPort: [80]", 1);
    assert!(
        error(&text)
            .starts_with("document 1: spec.template.spec.containers[0].ports[0].containerPort: "),
        "{}",
        error(&text)
    );
}

#[test]
fn unknown_kind_suggests_the_nearest() {
    let text = APP.replacen("kind: Deployment", "kind: Deploymnet", 1);
    assert_eq!(
        error(&text),
        r#"document 1: unknown kind "Deploymnet" (apiVersion "apps/v1"); did you mean "Deployment"?"#
    );
}

#[test]
fn api_version_mismatch_names_both() {
    let text = APP.replacen("apiVersion: apps/v1", "apiVersion: v1", 1);
    assert_eq!(
        error(&text),
        r#"document 1: kind Deployment is not in apiVersion "v1": Deployment is apps/v1"#
    );
}

#[test]
fn missing_api_version() {
    let text = APP.replacen("apiVersion: v1\nkind: Service", "kind: Service", 1);
    assert_eq!(
        error(&text),
        "document 2: missing apiVersion (every object needs apiVersion and kind)"
    );
}

#[test]
fn lists_expand_in_yaml_and_json() {
    let yaml = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n\
                - {apiVersion: v1, kind: Pod, metadata: {name: b}}\n";
    let names: Vec<_> = decode(yaml)
        .iter()
        .map(|d| (d.info.kind.clone(), d.name()))
        .collect();
    assert_eq!(
        names,
        [
            ("ConfigMap".to_string(), "a".to_string()),
            ("Pod".to_string(), "b".to_string())
        ]
    );
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}]}"#;
    let docs = decode(json);
    let svc: Service = decode_as(&docs[0]).unwrap();
    assert_eq!(
        svc.spec.unwrap().ports[0]
            .target_port
            .as_ref()
            .unwrap()
            .value,
        Some(IntOrString::IntVal(8080))
    );
}

#[test]
fn json_input_takes_camel_and_snake_case() {
    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"node_name": "n1", "containers": [{"name": "c", "image_pull_policy": "Never",
                 "ports": [{"containerPort": 80, "host_ip": "0.0.0.0"}]}]}}"#;
    let pod: Pod = decode_as(&decode(json)[0]).unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_name, "n1");
    assert_eq!(spec.containers[0].image_pull_policy, "Never");
    assert_eq!(spec.containers[0].ports[0].host_ip, "0.0.0.0");
    let err =
        error(r#"{"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"nam": "c"}]}}"#);
    assert_eq!(err, "document 1: spec.containers[0].nam: unknown field");
}
