package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func review(t *testing.T, h http.Handler, op admissionv1.Operation, object string) *admissionv1.AdmissionResponse {
	t.Helper()
	in := admissionv1.AdmissionReview{Request: &admissionv1.AdmissionRequest{
		UID: types.UID("uid-1"), Operation: op, Namespace: "shop", Name: "p",
	}}
	if object != "" { // a DELETE carries no object
		in.Request.Object = runtime.RawExtension{Raw: []byte(object)}
	}
	in.APIVersion, in.Kind = "admission.k8s.io/v1", "AdmissionReview"
	body, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil || out.Response.UID != "uid-1" {
		t.Fatalf("response does not answer the request: %+v", out.Response)
	}
	return out.Response
}

func TestWebhook(t *testing.T) {
	h := Handler(func(doc []byte) error {
		if strings.Contains(string(doc), "@rx (") {
			return errors.New(`custom rules line 1 (SecRule ARGS "@rx (" ...): missing closing )`)
		}
		return nil
	}, nil)
	tests := map[string]struct {
		op          admissionv1.Operation
		object      string
		wantAllowed bool
		wantMessage string
	}{
		"valid policy":       {admissionv1.Create, `{"spec":{}}`, true, ""},
		"bad custom rule":    {admissionv1.Update, `{"spec":{"customRules":"SecRule ARGS \"@rx (\""}}`, false, "WAFPolicy shop/p: custom rules line 1"},
		"delete always goes": {admissionv1.Delete, ``, true, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := review(t, h, tc.op, tc.object)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v", resp.Allowed, tc.wantAllowed)
			}
			if tc.wantMessage != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.wantMessage)) {
				t.Fatalf("message %+v, want %q", resp.Result, tc.wantMessage)
			}
		})
	}
}

func TestWebhookRejectsGarbage(t *testing.T) {
	rec := httptest.NewRecorder()
	Handler(func([]byte) error { return nil }, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader("{")))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", rec.Code)
	}
}
