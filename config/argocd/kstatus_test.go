package argocd_test

import (
	"testing"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func TestKstatus(t *testing.T) {
	for _, c := range statusCases(t) {
		t.Run(c.name, func(t *testing.T) {
			res, err := status.Compute(c.unstructured(t))
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != c.kstatus {
				t.Errorf("kstatus = %s (%q), want %s", res.Status, res.Message, c.kstatus)
			}
		})
	}
}
