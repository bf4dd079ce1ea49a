package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests are the Kubernetes objects of deploy/kubernetes, each decoded strictly into its API type: an
// unknown or misspelt field, a duplicate key or a wrong type fails the test, as it would fail kubectl apply.
type manifests struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	policies    []networkingv1.NetworkPolicy
	pdbs        []policyv1.PodDisruptionBudget
	namespaces  []corev1.Namespace
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			strict := func(into any) {
				if err := yaml.UnmarshalStrict(doc, into); err != nil {
					t.Fatalf("%s, document %d (%s): %v", f, i+1, meta.Kind, err)
				}
			}
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				var d appsv1.Deployment
				strict(&d)
				m.deployments = append(m.deployments, d)
			case "v1 Service":
				var s corev1.Service
				strict(&s)
				m.services = append(m.services, s)
			case "networking.k8s.io/v1 NetworkPolicy":
				var p networkingv1.NetworkPolicy
				strict(&p)
				m.policies = append(m.policies, p)
			case "policy/v1 PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				strict(&p)
				m.pdbs = append(m.pdbs, p)
			case "v1 Namespace":
				var n corev1.Namespace
				strict(&n)
				m.namespaces = append(m.namespaces, n)
			default:
				t.Fatalf("%s, document %d: unexpected %q %q", f, i+1, meta.APIVersion, meta.Kind)
			}
		}
	}
	return m
}

// TestKubernetesDeployment: two instances, non-root on a read-only root file system with no privilege, probes
// on /healthz and /readyz, the key from a Secret mounted read-only, and a disruption budget that keeps one.
func TestKubernetesDeployment(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 {
		t.Fatalf("%d Deployments, want 1", len(m.deployments))
	}
	d := m.deployments[0]
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod security context %+v: want runAsNonRoot and a non-zero runAsUser", sc)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("container security context %+v: want a read-only root, no privilege escalation, all capabilities dropped", sc)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["intake"] != 8080 || ports["console"] != 8081 {
		t.Errorf("container ports %v", ports)
	}
	for name, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name {
			t.Errorf("probe %s missing: %+v", name, probe)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	keyFile := env["GATEWAY_KEY_FILE"].Value
	var keyMount *corev1.VolumeMount
	for i, vm := range c.VolumeMounts {
		if keyFile != "" && strings.HasPrefix(keyFile, vm.MountPath+"/") {
			keyMount = &c.VolumeMounts[i]
		}
	}
	if keyMount == nil || !keyMount.ReadOnly {
		t.Fatalf("the key file %q is not on a read-only mount: %+v", keyFile, c.VolumeMounts)
	}
	fromSecret := false
	for _, v := range pod.Volumes {
		if v.Name != keyMount.Name || v.Secret == nil {
			continue
		}
		fromSecret = true
		// Root's file under the pod's fsGroup: gatewayd takes group read access in that shape only.
		if m := v.Secret.DefaultMode; m == nil || *m != 0o440 {
			t.Errorf("key volume mode %v: want 0440 (root and the pod's group, read-only)", m)
		}
	}
	if !fromSecret {
		t.Errorf("the key volume %s is not a Secret", keyMount.Name)
	}
	if sc := pod.SecurityContext; sc.FSGroup == nil || sc.RunAsGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Errorf("fsGroup %v, runAsGroup %v: the Secret files must belong to the process's own group", sc.FSGroup, sc.RunAsGroup)
	}
	if e := env["GATEWAY_DB"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Errorf("GATEWAY_DB should come from a Secret (it holds the password): %+v", e)
	}
	if len(m.pdbs) != 1 || m.pdbs[0].Spec.MinAvailable == nil || m.pdbs[0].Spec.MinAvailable.IntValue() != 1 ||
		!selects(t, m.pdbs[0].Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget: want one, minAvailable 1, selecting gatewayd's pods")
	}
}

func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %+v: %v", sel, err)
	}
	return s.Matches(labels.Set(l))
}

// TestKubernetesServices: one Service per listener, each reaching its listener's port only.
func TestKubernetesServices(t *testing.T) {
	m := loadManifests(t)
	pods := m.deployments[0].Spec.Template.Labels
	targets := map[string]string{}
	for _, s := range m.services {
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, pods) || len(s.Spec.Selector) == 0 {
			t.Errorf("service %s does not select gatewayd's pods", s.Name)
		}
		if len(s.Spec.Ports) != 1 {
			t.Errorf("service %s has %d ports, want its listener's only", s.Name, len(s.Spec.Ports))
			continue
		}
		targets[s.Name] = s.Spec.Ports[0].TargetPort.String()
	}
	if len(targets) != 2 || targets["gatewayd-intake"] != "intake" || targets["gatewayd-console"] != "console" {
		t.Errorf("services %v: want gatewayd-intake -> intake and gatewayd-console -> console", targets)
	}
}

// peer is a pod somewhere in the cluster, as a NetworkPolicy sees it.
type peer struct {
	namespace string
	pod       map[string]string
}

// allowed evaluates the NetworkPolicies as Kubernetes does, for traffic between a gatewayd pod and a peer on
// one port: with no policy of that direction selecting the pod, everything passes; otherwise the traffic
// must match a rule of one of them (rules add up, none subtracts).
func allowed(t *testing.T, m manifests, ingress bool, p peer, proto corev1.Protocol, port int32) bool {
	t.Helper()
	d := m.deployments[0]
	nsLabels := func(ns string) map[string]string { return map[string]string{"kubernetes.io/metadata.name": ns} }
	isolated := false
	for _, pol := range m.policies {
		if pol.Namespace != d.Namespace || !selects(t, &pol.Spec.PodSelector, d.Spec.Template.Labels) {
			continue
		}
		want := networkingv1.PolicyTypeEgress
		if ingress {
			want = networkingv1.PolicyTypeIngress
		}
		if !slices.Contains(pol.Spec.PolicyTypes, want) {
			continue
		}
		isolated = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if ingress {
			for _, r := range pol.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		} else {
			for _, r := range pol.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		}
		for _, r := range rules {
			peerOK := len(r.peers) == 0
			for _, np := range r.peers {
				if np.IPBlock != nil {
					t.Fatalf("policy %s: an ipBlock rule; this check (and the air gap) wants namespaces and pods", pol.Name)
				}
				nsOK := p.namespace == pol.Namespace
				if np.NamespaceSelector != nil {
					nsOK = selects(t, np.NamespaceSelector, nsLabels(p.namespace))
				}
				podOK := np.PodSelector == nil || selects(t, np.PodSelector, p.pod)
				peerOK = peerOK || (nsOK && podOK)
			}
			portOK := len(r.ports) == 0
			for _, pp := range r.ports {
				pr := corev1.ProtocolTCP
				if pp.Protocol != nil {
					pr = *pp.Protocol
				}
				portOK = portOK || (pr == proto && (pp.Port == nil || pp.Port.IntValue() == int(port)))
			}
			if peerOK && portOK {
				return true
			}
		}
	}
	return !isolated
}

// TestKubernetesNetworkPolicies: intake only from the ingress namespace, the console only from the internal
// namespace, and out only to PostgreSQL (and the DNS that names it). The matrix checked is printed.
func TestKubernetesNetworkPolicies(t *testing.T) {
	m := loadManifests(t)
	ingressCtl := peer{"ingress-nginx", map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
	internal := peer{"hospital-internal", map[string]string{"app": "workstation-proxy"}}
	other := peer{"default", map[string]string{"app": "anything"}}
	sibling := peer{"gatewayd", m.deployments[0].Spec.Template.Labels}
	postgres := peer{"gatewayd-db", map[string]string{"cnpg.io/cluster": "gatewayd-db"}}
	otherDBPod := peer{"gatewayd-db", map[string]string{"app": "backup-tool"}}
	dns := peer{"kube-system", map[string]string{"k8s-app": "kube-dns"}}
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	cases := []struct {
		what    string
		ingress bool
		peer    peer
		proto   corev1.Protocol
		port    int32
		want    bool
	}{
		{"ingress controller -> intake", true, ingressCtl, tcp, 8080, true},
		{"ingress controller -> console", true, ingressCtl, tcp, 8081, false},
		{"internal -> console", true, internal, tcp, 8081, true},
		{"internal -> intake", true, internal, tcp, 8080, false},
		{"other namespace -> intake", true, other, tcp, 8080, false},
		{"other namespace -> console", true, other, tcp, 8081, false},
		{"another gatewayd pod -> console", true, sibling, tcp, 8081, false},
		{"database namespace -> console", true, postgres, tcp, 8081, false},
		{"gatewayd -> PostgreSQL 5432", false, postgres, tcp, 5432, true},
		{"gatewayd -> PostgreSQL pod, another port", false, postgres, tcp, 22, false},
		{"gatewayd -> another pod of the database namespace", false, otherDBPod, tcp, 5432, false},
		{"gatewayd -> cluster DNS", false, dns, udp, 53, true},
		{"gatewayd -> cluster DNS pod, HTTPS", false, dns, tcp, 443, false},
		{"gatewayd -> internal namespace", false, internal, tcp, 443, false},
		{"gatewayd -> ingress namespace", false, ingressCtl, tcp, 80, false},
		{"gatewayd -> other namespace", false, other, tcp, 443, false},
	}
	for _, tc := range cases {
		got := allowed(t, m, tc.ingress, tc.peer, tc.proto, tc.port)
		verdict := map[bool]string{true: "allowed", false: "refused"}
		t.Logf("%-48s %s", tc.what, verdict[got])
		if got != tc.want {
			t.Errorf("%s: %s, want %s", tc.what, verdict[got], verdict[tc.want])
		}
	}
}
