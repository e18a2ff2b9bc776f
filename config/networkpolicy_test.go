package config_test

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	herokunixv1 "github.com/herokunix/herokunix/api/v1alpha1"
	"github.com/herokunix/herokunix/internal/build"
)

// TestDocsHaveANetworkPolicyForBuildPods: the docs show a NetworkPolicy
// that selects the pods build Jobs make (by their labels, as the code sets
// them), refuses them all inbound traffic and lets them out only to DNS
// and HTTPS.
func TestDocsHaveANetworkPolicyForBuildPods(t *testing.T) {
	app := &herokunixv1.HerokuNixApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "team-a"},
		Spec: herokunixv1.HerokuNixAppSpec{
			AppName: "acme-shop", Flake: "github:acme/shop?ref=main",
			Processes:            map[string]herokunixv1.Process{"web": {Attribute: "packages.x86_64-linux.web"}},
			CredentialsSecretRef: herokunixv1.SecretKeyRef{Name: "heroku"},
		},
	}
	job, err := build.DesiredJob(app, build.DesiredFor(app, time.Now(), false), build.JobImages{Tools: "tools", Nix: "nix"})
	if err != nil {
		t.Fatal(err)
	}
	podLabels := labels.Set(job.Spec.Template.Labels)

	found := 0
	for _, file := range docFiles(t) {
		for _, block := range fencedBlocks(t, file, "yaml") {
			for _, doc := range docSeparator.Split(block, -1) {
				if !strings.Contains(doc, "kind: NetworkPolicy") {
					continue
				}
				var np networkingv1.NetworkPolicy
				if err := yaml.UnmarshalStrict([]byte(doc), &np); err != nil {
					t.Errorf("%s: %v", file, err)
					continue
				}
				sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
				if err != nil || sel.Empty() || !sel.Matches(podLabels) {
					t.Errorf("%s: NetworkPolicy %s selects %v, not the build pods (%v)", file, np.Name, np.Spec.PodSelector, podLabels)
					continue
				}
				found++
				types := map[networkingv1.PolicyType]bool{}
				for _, pt := range np.Spec.PolicyTypes {
					types[pt] = true
				}
				if !types[networkingv1.PolicyTypeIngress] || !types[networkingv1.PolicyTypeEgress] || len(np.Spec.Ingress) != 0 {
					t.Errorf("%s: NetworkPolicy %s does not refuse all ingress and limit egress: %v", file, np.Name, np.Spec.PolicyTypes)
				}
				ports := map[int32]bool{}
				for _, rule := range np.Spec.Egress {
					if len(rule.Ports) == 0 {
						t.Errorf("%s: NetworkPolicy %s lets build pods out on every port", file, np.Name)
					}
					for _, p := range rule.Ports {
						if p.Port == nil || p.Port.IntVal == 0 {
							t.Errorf("%s: NetworkPolicy %s has an egress rule without a numbered port", file, np.Name)
							continue
						}
						ports[p.Port.IntVal] = true
						if p.Port.IntVal != 443 && p.Port.IntVal != 53 {
							t.Errorf("%s: NetworkPolicy %s opens port %d", file, np.Name, p.Port.IntVal)
						}
						if p.Port.IntVal == 443 && (p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP) {
							t.Errorf("%s: NetworkPolicy %s: HTTPS is TCP", file, np.Name)
						}
					}
				}
				if !ports[443] || !ports[53] {
					t.Errorf("%s: NetworkPolicy %s lets build pods reach ports %v, want DNS (53) and HTTPS (443)", file, np.Name, ports)
				}
			}
		}
	}
	if found == 0 {
		t.Error("no NetworkPolicy example in the docs selects build pods")
	}
}
