package status

import (
	"encoding/xml"
	"html"
	"sort"
	"strings"
	"time"
)

// feedLimit is how many incidents and maintenances the feeds carry.
const feedLimit = 50

type atomLink struct {
	Rel  string `xml:"rel,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomText struct {
	Type string `xml:"type,attr,omitempty"`
	Body string `xml:",chardata"`
}

type atomEntry struct {
	ID        string   `xml:"id"`
	Title     string   `xml:"title"`
	Updated   string   `xml:"updated"`
	Published string   `xml:"published"`
	Link      atomLink `xml:"link"`
	Content   atomText `xml:"content"`
}

type atomFeed struct {
	XMLName xml.Name   `xml:"http://www.w3.org/2005/Atom feed"`
	Lang    string     `xml:"xml:lang,attr"`
	ID      string     `xml:"id"`
	Title   string     `xml:"title"`
	Updated string     `xml:"updated"`
	Links   []atomLink `xml:"link"`
	Author  struct {
		Name string `xml:"name"`
	} `xml:"author"`
	Entries []atomEntry `xml:"entry"`
}

type rssGUID struct {
	IsPermaLink string `xml:"isPermaLink,attr"`
	Value       string `xml:",chardata"`
}

type rssItem struct {
	Title       string  `xml:"title"`
	Link        string  `xml:"link"`
	GUID        rssGUID `xml:"guid"`
	PubDate     string  `xml:"pubDate"`
	Description string  `xml:"description"`
}

type rssFeed struct {
	XMLName xml.Name `xml:"rss"`
	Version string   `xml:"version,attr"`
	Channel struct {
		Title         string    `xml:"title"`
		Link          string    `xml:"link"`
		Description   string    `xml:"description"`
		Language      string    `xml:"language"`
		LastBuildDate string    `xml:"lastBuildDate"`
		Items         []rssItem `xml:"item"`
	} `xml:"channel"`
}

// feedItem is an incident or maintenance as a feed entry.
type feedItem struct {
	id, title, link    string
	published, updated time.Time
	content            string // HTML
}

func updatesHTML(ups []Update, extra string) string {
	var b strings.Builder
	b.WriteString(extra)
	for i := len(ups) - 1; i >= 0; i-- {
		u := ups[i]
		b.WriteString("<p><strong>" + html.EscapeString(StatusText(u.Status)) + "</strong> - " +
			html.EscapeString(u.Body) + " <small>" + u.CreatedAt.UTC().Format("Jan 2, 15:04 UTC") + "</small></p>")
	}
	return b.String()
}

func (p *Portal) feedID(id string) string {
	if p.url != "" {
		return p.shortlink(id)
	}
	return "urn:gatehouse:status:" + p.pageID + ":" + id
}

func (p *Portal) addFeeds(b *siteBuilder, incidents []*Incident, maints []*MaintenanceWindow) {
	var items []feedItem
	for _, in := range incidents {
		items = append(items, feedItem{id: p.feedID(in.ID), title: in.Name, link: p.shortlink(in.ID),
			published: in.CreatedAt, updated: in.UpdatedAt, content: updatesHTML(in.Updates, "")})
	}
	for _, m := range maints {
		window := "<p>Scheduled from " + m.ScheduledFor.UTC().Format("Jan 2, 15:04 UTC") + " to " + m.ScheduledUntil.UTC().Format("Jan 2, 15:04 UTC") + "</p>"
		items = append(items, feedItem{id: p.feedID(m.ID), title: "Maintenance: " + m.Name, link: p.shortlink(m.ID),
			published: m.CreatedAt, updated: m.UpdatedAt, content: updatesHTML(m.Updates, window)})
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].updated.After(items[j].updated) })
	if len(items) > feedLimit {
		items = items[:feedLimit]
	}
	updated := p.updatedAt
	if len(items) > 0 && items[0].updated.After(updated) {
		updated = items[0].updated
	}
	home := p.url
	if home == "" {
		home = "index.html"
	}

	title := feedTitle(p.title)
	af := atomFeed{Lang: "en", ID: p.feedID("history"), Title: title, Updated: updated.UTC().Format(time.RFC3339),
		Links: []atomLink{{Rel: "alternate", Type: "text/html", Href: home}, {Rel: "self", Type: "application/atom+xml", Href: p.url + "history.atom"}}}
	af.Author.Name = p.title
	for _, it := range items {
		af.Entries = append(af.Entries, atomEntry{ID: it.id, Title: it.title, Updated: it.updated.UTC().Format(time.RFC3339),
			Published: it.published.UTC().Format(time.RFC3339), Link: atomLink{Rel: "alternate", Type: "text/html", Href: it.link},
			Content: atomText{Type: "html", Body: it.content}})
	}
	b.xml("history.atom", "application/atom+xml; charset=utf-8", af)

	var rf rssFeed
	rf.Version = "2.0"
	rf.Channel.Title = title
	rf.Channel.Link = home
	rf.Channel.Description = "Incidents and maintenance of " + p.title
	rf.Channel.Language = "en"
	rf.Channel.LastBuildDate = updated.UTC().Format(time.RFC1123Z)
	for _, it := range items {
		rf.Channel.Items = append(rf.Channel.Items, rssItem{Title: it.title, Link: it.link,
			GUID: rssGUID{IsPermaLink: "false", Value: it.id}, PubDate: it.published.UTC().Format(time.RFC1123Z), Description: it.content})
	}
	b.xml("history.rss", "application/rss+xml; charset=utf-8", rf)
}

// feedTitle is the title of the history feeds: the portal's title and
// "status history", without saying "status" twice when the title already
// ends with it ("EU01 service status" gives "EU01 service status history").
func feedTitle(title string) string {
	t := strings.TrimSpace(title)
	if f := strings.Fields(t); len(f) > 0 && strings.EqualFold(strings.Trim(f[len(f)-1], ".:-"), "status") {
		return strings.TrimRight(t, ".:- ") + " history"
	}
	return t + " status history"
}

// xml queues v, encoded as XML, as the document at path.
func (b *siteBuilder) xml(path, ctype string, v any) {
	b.do(func(b *siteBuilder) {
		out, err := xml.MarshalIndent(v, "", " ")
		if err != nil && b.err == nil {
			b.err = err
		}
		b.add(path, ctype, append([]byte(xml.Header), out...))
	})
}
