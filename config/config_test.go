// Package config_test renders every kustomization under config/ with the
// kustomize Go module (no network, no kubectl) and checks what it makes:
// every object decodes strictly, the manager runs locked down, and the RBAC
// it is given is exactly what the controller calls.
package config_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
)

const (
	installNamespace = "herokunix-system"
	managerImage     = "ghcr.io/herokunix/herokunix"
)

// unstructuredKinds are kinds the scheme does not know that a
// kustomization may hold (optional add-ons); they are checked by hand.
var unstructuredKinds = map[schema.GroupVersionKind]bool{
	{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}: true,
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, herokunixv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// rendered is what one kustomization makes.
type rendered struct {
	objects []runtime.Object
	raw     []*unstructured.Unstructured
}

// render builds the kustomization in dir (relative to config/) from disk
// and decodes every object strictly: an unknown field is an error.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	scheme := newScheme(t)
	strict := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
	var out rendered
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(y, &u.Object); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		out.raw = append(out.raw, u)
		gvk := u.GroupVersionKind()
		if unstructuredKinds[gvk] {
			out.objects = append(out.objects, u)
			continue
		}
		obj, _, err := strict.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v", dir, gvk.Kind, u.GetName(), err)
			continue
		}
		out.objects = append(out.objects, obj)
	}
	return out
}

// kustomizations lists every directory under config/ with a kustomization.
func kustomizations(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() == "kustomization.yaml" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"default", "crd", "rbac", "manager", "prometheus"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("config/%s has no kustomization.yaml", want)
		}
	}
	return dirs
}

func TestEveryKustomizationRendersAndDecodes(t *testing.T) {
	for _, dir := range kustomizations(t) {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			if len(r.objects) == 0 {
				t.Fatalf("%s renders nothing", dir)
			}
			for _, u := range r.raw {
				if u.GetName() == "" {
					t.Errorf("%s: a %s has no name", dir, u.GetKind())
				}
			}
		})
	}
}

// find returns the one object of type T with the given name.
func find[T runtime.Object](t *testing.T, r rendered, name string) T {
	t.Helper()
	var zero T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			if acc, ok := any(v).(interface{ GetName() string }); ok && acc.GetName() == name {
				return v
			}
		}
	}
	t.Fatalf("no %T named %s in the rendered install", zero, name)
	return zero
}

func TestDefaultInstallsEverythingInItsNamespace(t *testing.T) {
	r := render(t, "default")
	var got []string
	for _, u := range r.raw {
		got = append(got, fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName()))
		if ns := u.GetNamespace(); ns != "" && ns != installNamespace {
			t.Errorf("%s %s is in namespace %s, want %s", u.GetKind(), u.GetName(), ns, installNamespace)
		}
	}
	sort.Strings(got)
	want := []string{
		"ClusterRole /herokunix-herokunixapp-editor",
		"ClusterRole /herokunix-herokunixapp-viewer",
		"ClusterRole /herokunix-manager",
		"ClusterRole /herokunix-metrics-reader",
		"ClusterRoleBinding /herokunix-manager",
		"CustomResourceDefinition /herokunixapps.herokunix.dev",
		"Deployment herokunix-system/herokunix-controller-manager",
		"Namespace /herokunix-system",
		"Role herokunix-system/herokunix-leader-election",
		"RoleBinding herokunix-system/herokunix-leader-election",
		"Service herokunix-system/herokunix-controller-manager-metrics",
		"ServiceAccount herokunix-system/herokunix-controller-manager",
	}
	if !slices.Equal(got, want) {
		t.Errorf("config/default renders\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestManagerDeploymentIsLockedDown(t *testing.T) {
	r := render(t, "default")
	d := find[*appsv1.Deployment](t, r, "herokunix-controller-manager")
	pod := d.Spec.Template.Spec

	if pod.ServiceAccountName != "herokunix-controller-manager" {
		t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
	}
	find[*corev1.ServiceAccount](t, r, pod.ServiceAccountName)

	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod: runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: seccompProfile is not RuntimeDefault")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if !strings.HasPrefix(c.Image, managerImage+":") {
		t.Errorf("image = %q, want %s:TAG", c.Image, managerImage)
	}
	for _, arg := range []string{"--leader-elect", "--metrics-bind-address=:8443", "--health-probe-bind-address=:8081"} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	// Metrics are served over HTTPS to authorized callers only (the
	// manager's default); plain HTTP is for local use.
	for _, arg := range c.Args {
		if strings.HasPrefix(arg, "--metrics-secure") {
			t.Errorf("args %v change the metrics' authentication (%s)", c.Args, arg)
		}
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container has no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("container: runAsNonRoot is not true")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container: readOnlyRootFilesystem is not true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container: allowPrivilegeEscalation is not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("container: capabilities do not drop ALL (and add none)")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container is privileged")
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
		if _, ok := c.Resources.Limits[res]; !ok {
			t.Errorf("no %s limit", res)
		}
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: not an HTTP GET", name)
			return
		}
		if p.HTTPGet.Path != path || containerPort(c, p.HTTPGet.Port.String()) != 8081 {
			t.Errorf("%s probe: GET %s on %s, want %s on 8081", name, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
		}
	}
	probe("liveness", c.LivenessProbe, "/healthz")
	probe("readiness", c.ReadinessProbe, "/readyz")

	var tmp bool
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/tmp" {
			for _, v := range pod.Volumes {
				tmp = tmp || (v.Name == m.Name && v.EmptyDir != nil)
			}
		}
	}
	if !tmp {
		t.Error("/tmp is not an emptyDir (the root filesystem is read-only)")
	}

	svc := find[*corev1.Service](t, r, "herokunix-controller-manager-metrics")
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8443 || svc.Spec.Ports[0].Name != "https" || containerPort(c, svc.Spec.Ports[0].TargetPort.String()) != 8443 {
		t.Errorf("metrics Service ports %+v are not https on 8443 reaching the container's 8443", svc.Spec.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selector %s=%s does not select the manager's pods", k, v)
		}
	}
}

// containerPort resolves a probe or Service port (a number or a name).
func containerPort(c corev1.Container, port string) int32 {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	return 0
}

// permission is one verb on one resource of one API group; namespace is
// empty for a cluster-wide grant.
type permission struct {
	group, resource, verb, namespace string
}

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	s := fmt.Sprintf("%s %s.%s", p.verb, p.resource, g)
	if p.namespace != "" {
		s += " in " + p.namespace
	}
	return s
}

func expand(rules []rbacv1.PolicyRule, namespace string) map[permission]bool {
	out := map[permission]bool{}
	for _, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					out[permission{g, res, v, namespace}] = true
				}
			}
		}
	}
	return out
}

// markerPermissions reads the +kubebuilder:rbac markers of controllers/.
func markerPermissions(t *testing.T) map[permission]bool {
	t.Helper()
	files, err := filepath.Glob("../controllers/*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no controllers/*.go: %v", err)
	}
	marker := regexp.MustCompile(`^\s*//\s*\+kubebuilder:rbac:(.*)$`)
	var rules []rbacv1.PolicyRule
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			m := marker.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			var rule rbacv1.PolicyRule
			for _, kv := range strings.Split(m[1], ",") {
				k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
				vals := strings.Split(strings.Trim(v, `"`), ";")
				switch k {
				case "groups":
					rule.APIGroups = vals
				case "resources":
					rule.Resources = vals
				case "verbs":
					rule.Verbs = vals
				case "namespace", "urls", "resourceNames":
					t.Fatalf("%s: marker %q uses %s, which this test does not model", f, m[0], k)
				}
			}
			rules = append(rules, rule)
		}
	}
	if len(rules) == 0 {
		t.Fatal("no +kubebuilder:rbac markers in controllers/")
	}
	return expand(rules, "")
}

// controllerCalls is what the controller does with the API, listed by hand
// from controllers/ and cmd/manager: a marker that goes missing fails here
// even if role.yaml is regenerated from it.
var controllerCalls = []permission{
	// The HerokuNixApp cache, finalizer and metadata patches, status patch.
	{"herokunix.dev", "herokunixapps", "get", ""},
	{"herokunix.dev", "herokunixapps", "list", ""},
	{"herokunix.dev", "herokunixapps", "watch", ""},
	{"herokunix.dev", "herokunixapps", "patch", ""},
	{"herokunix.dev", "herokunixapps/status", "patch", ""},
	// Setting an owner reference with blockOwnerDeletion on build Jobs.
	{"herokunix.dev", "herokunixapps/finalizers", "update", ""},
	// Build Jobs: owned, created, and cancelled.
	{"batch", "jobs", "get", ""},
	{"batch", "jobs", "list", ""},
	{"batch", "jobs", "watch", ""},
	{"batch", "jobs", "create", ""},
	{"batch", "jobs", "delete", ""},
	// The push container's termination message.
	{"", "pods", "get", ""},
	{"", "pods", "list", ""},
	{"", "pods", "watch", ""},
	// API keys, watched so a fixed Secret is picked up at once.
	{"", "secrets", "get", ""},
	{"", "secrets", "list", ""},
	{"", "secrets", "watch", ""},
	// Events, through the events.k8s.io recorder and core for older paths.
	{"events.k8s.io", "events", "create", ""},
	{"events.k8s.io", "events", "patch", ""},
	{"", "events", "create", ""},
	{"", "events", "patch", ""},
}

// leaderElectionCalls happen in the manager's own namespace.
var leaderElectionCalls = []permission{
	{"coordination.k8s.io", "leases", "get", installNamespace},
	{"coordination.k8s.io", "leases", "create", installNamespace},
	{"coordination.k8s.io", "leases", "update", installNamespace},
	{"", "events", "create", installNamespace},
	{"events.k8s.io", "events", "create", installNamespace},
}

// granted is every permission the manager's ServiceAccount holds through
// the rendered bindings.
func granted(t *testing.T, r rendered, sa, saNamespace string) map[permission]bool {
	t.Helper()
	bound := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == saNamespace {
				return true
			}
		}
		return false
	}
	out := map[permission]bool{}
	for _, o := range r.objects {
		switch b := o.(type) {
		case *rbacv1.ClusterRoleBinding:
			if !bound(b.Subjects) {
				continue
			}
			if b.RoleRef.Kind != "ClusterRole" {
				t.Fatalf("ClusterRoleBinding %s refers to a %s", b.Name, b.RoleRef.Kind)
			}
			addAll(out, expand(find[*rbacv1.ClusterRole](t, r, b.RoleRef.Name).Rules, ""))
		case *rbacv1.RoleBinding:
			if !bound(b.Subjects) {
				continue
			}
			var rules []rbacv1.PolicyRule
			switch b.RoleRef.Kind {
			case "Role":
				role := find[*rbacv1.Role](t, r, b.RoleRef.Name)
				if role.Namespace != b.Namespace {
					t.Fatalf("RoleBinding %s/%s refers to Role %s/%s", b.Namespace, b.Name, role.Namespace, role.Name)
				}
				rules = role.Rules
			case "ClusterRole":
				rules = find[*rbacv1.ClusterRole](t, r, b.RoleRef.Name).Rules
			}
			addAll(out, expand(rules, b.Namespace))
		}
	}
	return out
}

func addAll(dst, src map[permission]bool) {
	for k := range src {
		dst[k] = true
	}
}

func TestGeneratedRoleMatchesTheMarkers(t *testing.T) {
	data, err := os.ReadFile("rbac/role.yaml")
	if err != nil {
		t.Fatalf("%v (run make manifests)", err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil {
		t.Fatal(err)
	}
	if role.Name != "herokunix-manager" {
		t.Errorf("generated ClusterRole is %q, want herokunix-manager", role.Name)
	}
	got, want := expand(role.Rules, ""), markerPermissions(t)
	for p := range want {
		if !got[p] {
			t.Errorf("config/rbac/role.yaml lacks %s from a marker: run make manifests", p)
		}
	}
	for p := range got {
		if !want[p] {
			t.Errorf("config/rbac/role.yaml grants %s, which no marker asks for: run make manifests", p)
		}
	}
}

func TestManagerRBACCoversEveryCallAndNoMore(t *testing.T) {
	r := render(t, "default")
	have := granted(t, r, "herokunix-controller-manager", installNamespace)

	need := markerPermissions(t)
	for _, p := range controllerCalls {
		if !need[p] {
			t.Errorf("the controller calls %s but no +kubebuilder:rbac marker grants it", p)
		}
	}
	for _, p := range leaderElectionCalls {
		need[p] = true
	}
	for p := range need {
		if !have[p] && !have[permission{p.group, p.resource, p.verb, ""}] {
			t.Errorf("the manager's ServiceAccount may not %s", p)
		}
	}
	// Least privilege: nothing beyond the markers and leader election.
	leader := expand(find[*rbacv1.Role](t, r, "herokunix-leader-election").Rules, installNamespace)
	for p := range have {
		if !need[p] && !leader[p] {
			t.Errorf("the manager's ServiceAccount may %s, which nothing calls", p)
		}
	}
}

func TestNoRoleUsesWildcards(t *testing.T) {
	for _, dir := range kustomizations(t) {
		r := render(t, dir)
		for _, o := range r.objects {
			var rules []rbacv1.PolicyRule
			var name string
			switch role := o.(type) {
			case *rbacv1.ClusterRole:
				rules, name = role.Rules, "ClusterRole "+role.Name
				if role.AggregationRule != nil {
					t.Errorf("%s: %s aggregates other roles", dir, name)
				}
			case *rbacv1.Role:
				rules, name = role.Rules, "Role "+role.Name
			default:
				continue
			}
			for _, rule := range rules {
				for _, s := range slices.Concat(rule.Verbs, rule.Resources, rule.APIGroups) {
					if strings.Contains(s, "*") {
						t.Errorf("%s: %s has a wildcard rule %+v", dir, name, rule)
					}
				}
				// Only the metrics reader, and only to get /metrics.
				metrics := strings.HasSuffix(name, "metrics-reader") && slices.Equal(rule.NonResourceURLs, []string{"/metrics"}) &&
					slices.Equal(rule.Verbs, []string{"get"}) && len(rule.Resources) == 0
				if len(rule.NonResourceURLs) > 0 && !metrics {
					t.Errorf("%s: %s grants non-resource URLs", dir, name)
				}
			}
		}
	}
}

func TestServiceMonitorScrapesTheMetricsService(t *testing.T) {
	r := render(t, "prometheus")
	var sm *unstructured.Unstructured
	for _, u := range r.raw {
		if u.GetKind() == "ServiceMonitor" {
			sm = u
		}
	}
	if sm == nil {
		t.Fatal("config/prometheus has no ServiceMonitor")
	}
	svc := find[*corev1.Service](t, render(t, "manager"), "controller-manager-metrics")
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	for k, v := range sel {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s; the metrics Service has %v", k, v, svc.Labels)
		}
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != svc.Spec.Ports[0].Name {
		t.Fatalf("ServiceMonitor endpoints %v do not name the Service's port %s", eps, svc.Spec.Ports[0].Name)
	}
	// The manager serves HTTPS to callers with a bearer token.
	ep := eps[0].(map[string]any)
	if ep["scheme"] != "https" || ep["bearerTokenFile"] == nil {
		t.Errorf("ServiceMonitor endpoint %v does not scrape over https with a bearer token", ep)
	}
}

func TestMetricsReaderMayGetMetricsOnly(t *testing.T) {
	r := render(t, "default")
	role := find[*rbacv1.ClusterRole](t, r, "herokunix-metrics-reader")
	want := []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}
	if fmt.Sprint(role.Rules) != fmt.Sprint(want) {
		t.Errorf("metrics-reader rules %+v, want %+v", role.Rules, want)
	}
}
