package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

func managedFields() []metav1.ManagedFieldsEntry {
	return []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
}

// transformFor is the transform the cache applies to obj: its ByObject
// transform, else the default one.
func transformFor(t *testing.T, opts cache.Options, obj any) func(any) (any, error) {
	t.Helper()
	for o, by := range opts.ByObject {
		if _, same := o.(*corev1.Secret); same {
			if _, isSecret := obj.(*corev1.Secret); isSecret && by.Transform != nil {
				return by.Transform
			}
			if pm, isMeta := obj.(*metav1.PartialObjectMetadata); isMeta && pm.Kind == "Secret" && by.Transform != nil {
				return by.Transform
			}
		}
	}
	if opts.DefaultTransform == nil {
		t.Fatalf("the cache keeps %T as the API server sends it: no transform", obj)
	}
	return opts.DefaultTransform
}

func TestCacheStripsManagedFieldsFromEveryObject(t *testing.T) {
	opts := CacheOptions()
	for _, obj := range []interface {
		GetManagedFields() []metav1.ManagedFieldsEntry
		SetManagedFields([]metav1.ManagedFieldsEntry)
	}{
		&corev1.ConfigMap{},
		&corev1.Pod{},
		&corev1.Secret{},
		&metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}},
	} {
		obj.SetManagedFields(managedFields())
		out, err := transformFor(t, opts, obj)(obj)
		if err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
		if mf := out.(interface {
			GetManagedFields() []metav1.ManagedFieldsEntry
		}).GetManagedFields(); mf != nil {
			t.Errorf("%T cached with managedFields %v", obj, mf)
		}
	}
}

func TestCacheHoldsNoSecretData(t *testing.T) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "heroku", Namespace: "apps"},
		Data:       map[string][]byte{"api-key": []byte("hrku-secret")},
		StringData: map[string]string{"other": "secret"},
	}
	out, err := transformFor(t, CacheOptions(), s)(s)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.Secret)
	if got.Data != nil || got.StringData != nil {
		t.Errorf("cached Secret keeps its data: %v %v", got.Data, got.StringData)
	}
	if got.Name != "heroku" || got.Namespace != "apps" {
		t.Errorf("cached Secret lost its metadata: %s/%s", got.Namespace, got.Name)
	}
}
