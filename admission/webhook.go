package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Path is where the webhook is served.
const Path = "/validate-wafpolicy"

// maxReviewBytes bounds an AdmissionReview; the API server caps objects at
// about 1.5 MiB, so twice that is generous.
const maxReviewBytes = 3 << 20

// Check returns nil if the policy document may be admitted.
type Check func(doc []byte) error

// Handler answers AdmissionReview requests for WAFPolicies.
func Handler(check Check, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes))
		if err != nil {
			http.Error(w, "reading request: "+err.Error(), http.StatusBadRequest)
			return
		}
		var review admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
			http.Error(w, "not an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
			return
		}
		review.Response = respond(review.Request, check)
		if !review.Response.Allowed {
			log.Info("policy refused by the webhook", "policy", review.Request.Namespace+"/"+review.Request.Name,
				"reason", review.Response.Result.Message)
		}
		review.Request = nil
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(review)
	})
	return mux
}

func respond(req *admissionv1.AdmissionRequest, check Check) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Operation == admissionv1.Delete || len(req.Object.Raw) == 0 {
		return resp
	}
	if err := check(req.Object.Raw); err != nil {
		resp.Allowed = false
		resp.Result = &metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusUnprocessableEntity,
			Reason:  metav1.StatusReasonInvalid,
			Message: fmt.Sprintf("WAFPolicy %s/%s: %v", req.Namespace, req.Name, err),
		}
	}
	return resp
}
