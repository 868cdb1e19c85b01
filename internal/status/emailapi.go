package status

import (
	"encoding/json"
	"net/http"
)

// emailRoutes adds the operators' email subscriber calls to the
// management API:
//
//	GET    /v1/status/email/subscribers[?email=ADDR]  one JSON object per line
//	POST   /v1/status/email/subscribers               {"email", "components"}: confirmed by the operator
//	DELETE /v1/status/email/subscribers/{email}
//	POST   /v1/status/email/bounces                   {"email"} or {"dsn"}: a bounce after acceptance
//
// The list is streamed (one subscriber per line) so that 100,000
// subscribers never sit in memory at once.
func (p *Portal) emailRoutes(mux *http.ServeMux) {
	p.bounceRoute(mux)
	mux.HandleFunc("GET /v1/status/email/subscribers", func(w http.ResponseWriter, r *http.Request) {
		addr := r.URL.Query().Get("email")
		if p.mail == nil {
			p.reply(w, 0, nil, ErrEmailDisabled)
			return
		}
		if addr != "" {
			var one []EmailSubscriber
			err := p.EmailSubscribers(r.Context(), addr, func(s EmailSubscriber) error { one = append(one, s); return nil })
			if err != nil {
				p.reply(w, 0, nil, err)
				return
			}
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		err := p.EmailSubscribers(r.Context(), addr, func(s EmailSubscriber) error {
			s.Nonce = ""
			return enc.Encode(s)
		})
		if err != nil {
			p.log.Warn("listing email subscribers", "err", err)
		}
	})
	mux.HandleFunc("POST /v1/status/email/subscribers", func(w http.ResponseWriter, r *http.Request) {
		var req EmailSubscriberRequest
		if !readJSON(w, r, &req) {
			return
		}
		s, err := p.AddEmailSubscriber(r.Context(), req)
		s.Nonce = ""
		p.reply(w, http.StatusCreated, s, err)
	})
	mux.HandleFunc("DELETE /v1/status/email/subscribers/{email}", func(w http.ResponseWriter, r *http.Request) {
		err := p.RemoveEmailSubscriber(r.Context(), r.PathValue("email"))
		p.reply(w, http.StatusOK, map[string]string{"removed": r.PathValue("email")}, err)
	})
}
