package agent

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// procCall plays Envoy on one ext_proc stream: it sends msgs in order,
// reading an answer after each, and stops after an immediate response.
func procCall(t *testing.T, client extprocv3.ExternalProcessorClient, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, agentapi.GatewayMetadataKey, testGateway)
	stream, err := client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var answers []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatalf("send: %v", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		answers = append(answers, resp)
		if resp.GetImmediateResponse() != nil {
			break
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	// The agent ends its side once Envoy's is closed, without an error.
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("stream ended with %v, want EOF", err)
	}
	return answers
}

func TestAgentServesExtProc(t *testing.T) {
	x := newTestXDS(t)
	x.set(t, testPolicy(testGateway, "shop.example.com", withResponses(0, leakRule)))
	x.set(t, testPolicy(testGateway, "api.example.com"))
	a, audit := startAgent(t, x.addr)
	conn := dialReady(t, a)
	client := extprocv3.NewExternalProcessorClient(conn)
	buffered := filterv3.ProcessingMode_BUFFERED

	t.Run("request attack gets an immediate response", func(t *testing.T) {
		answers := procCall(t, client, procRequest("GET", "shop.example.com", sqliPath, nil, "", buffered))
		if got := answers[0].GetImmediateResponse().GetStatus().GetCode(); got != 403 {
			t.Errorf("answer = %v, want a 403 immediate response", answers[0])
		}
	})
	t.Run("response leak gets an immediate response", func(t *testing.T) {
		answers := procCall(t, client,
			procRequest("GET", "shop.example.com", "/account", nil, "", buffered),
			procResponseHeaders(200, "application/json", false),
			procResponseBody(`{"token":"secret-leak"}`, true))
		if len(answers) != 3 || answers[2].GetImmediateResponse().GetStatus().GetCode() != 403 {
			t.Errorf("answers = %v, want the response body answered with a 403", answers)
		}
	})
	t.Run("host without response inspection skips the response", func(t *testing.T) {
		answers := procCall(t, client, procRequest("GET", "api.example.com", "/", nil, "", buffered))
		mode := answers[0].GetModeOverride()
		if answers[0].GetRequestHeaders() == nil || mode.GetResponseHeaderMode() != filterv3.ProcessingMode_SKIP ||
			mode.GetResponseBodyMode() != filterv3.ProcessingMode_NONE {
			t.Errorf("answer = %v, want headers passed and the response skipped", answers[0])
		}
	})
	if n := len(audit.records(t)); n != 2 {
		t.Errorf("audit lines = %d, want 2", n)
	}
	_, metrics := httpGet(t, a, "/metrics")
	if want := `meshwaf_agent_inspection_duration_seconds_count{protocol="ext_proc"} 3`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %q", want)
	}
}
