//! The UI's one HTML page and its refreshable fragment. No external assets: the CSS and the
//! refresh script are inline. Every piece of text from the API or the user goes through
//! [`escape`].

use std::fmt::Write;

use super::{FormValues, View};
use crate::record::{Record, Summary};

/// What one rendering of the page shows.
#[derive(Debug)]
pub struct Page<'a> {
    /// The page's title (`TITLE`).
    pub title: &'a str,
    /// The UI pod's name.
    pub pod: &'a str,
    /// Where the API lives, for the footer.
    pub api_url: &'a str,
    /// What the API told, if it could be asked.
    pub view: Option<&'a View>,
    /// A refusal or failure to show in `#error`.
    pub error: Option<&'a str>,
    /// The form's values, kept after a refusal.
    pub form: &'a FormValues,
}

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.5rem; }
#error { background: #fde8e8; border: 1px solid #e0a0a0; padding: 0.75rem; border-radius: 4px; }
.suite { display: grid; grid-template-columns: 14rem 1fr 16rem; gap: 0.75rem; align-items: center; margin: 0.3rem 0; }
.name { overflow: hidden; text-overflow: ellipsis; font-family: ui-monospace, monospace; }
.track { background: #f3c4c4; height: 1rem; border-radius: 3px; overflow: hidden; }
.bar { background: #3a9a5b; height: 100%; }
.rate { color: #555; font-size: 0.9rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
form { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: end; }
label { display: flex; flex-direction: column; font-size: 0.9rem; }
input { padding: 0.3rem; width: 9rem; }
footer { margin-top: 2rem; color: #666; font-size: 0.85rem; }
.empty { color: #666; }
"#;

/// Every 5 s, swaps in the server-rendered `#summary`, `#results` and `#api-served-by`
/// from `/fragment`; skipped while the user is in the form, so typing is not disturbed.
const SCRIPT: &str = r#"
(function () {
  var form = document.getElementById('post-result');
  var status = document.getElementById('refresh-status');
  function refresh() {
    if (form && form.contains(document.activeElement)) { return; }
    fetch('/fragment', { cache: 'no-store' }).then(function (response) {
      if (!response.ok) { throw new Error('HTTP ' + response.status); }
      return response.text();
    }).then(function (html) {
      var fresh = document.createElement('template');
      fresh.innerHTML = html;
      ['summary', 'results', 'api-served-by'].forEach(function (id) {
        var now = document.getElementById(id);
        var next = fresh.content.getElementById(id);
        if (now && next) { now.replaceWith(next); }
      });
      status.textContent = '';
    }).catch(function (err) {
      status.textContent = '(refresh failed: ' + err.message + ')';
    });
  }
  setInterval(refresh, 5000);
})();
"#;

/// `text` safe inside HTML text and attribute values (quoted with either quote).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(page: &Page<'_>) -> String {
    let title = escape(page.title);
    let error = page
        .error
        .map(|e| format!("<p id=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    let form = form(page.form);
    let footer = format!(
        "<footer>Served by <span id=\"served-by\">{}</span>; API {} served by {} \
         <span id=\"refresh-status\"></span></footer>",
        escape(page.pod),
        escape(page.api_url),
        api_served_by(page.view),
    );
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n\
         {error}<h2>Pass rate by suite</h2>\n{summary}\n<h2>Latest results</h2>\n{results}\n\
         <h2>Record a run</h2>\n{form}\n{footer}\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        summary = summary(page.view),
        results = results(page.view),
    )
}

/// The parts the page's script refreshes: `#summary`, `#results` and `#api-served-by`.
pub fn fragment(view: &View) -> String {
    format!(
        "{}\n{}\n{}\n",
        summary(Some(view)),
        results(Some(view)),
        api_served_by(Some(view))
    )
}

fn api_served_by(view: Option<&View>) -> String {
    let pod = view.and_then(|v| v.api_pod.as_deref()).unwrap_or("unknown");
    format!("<span id=\"api-served-by\">{}</span>", escape(pod))
}

fn summary(view: Option<&View>) -> String {
    let mut out = String::from("<section id=\"summary\">\n");
    match view.map(|v| v.summary.as_slice()) {
        None => out.push_str("<p class=\"empty\">Unavailable: the API did not answer.</p>\n"),
        Some([]) => out.push_str("<p class=\"empty\">No results yet.</p>\n"),
        Some(suites) => suites.iter().for_each(|s| bar(&mut out, s)),
    }
    out.push_str("</section>");
    out
}

fn bar(out: &mut String, summary: &Summary) {
    let suite = escape(&summary.suite);
    // Clamped: a bar never leaves its track, whatever the API says.
    let rate = summary.pass_rate.clamp(0.0, 100.0);
    let tests = summary.passed.saturating_add(summary.failed);
    let _ = writeln!(
        out,
        "<div class=\"suite\"><span class=\"name\">{suite}</span><div class=\"track\">\
         <div class=\"bar\" data-suite=\"{suite}\" data-pass-rate=\"{rate:.1}\" style=\"width:{rate:.1}%\"></div>\
         </div><span class=\"rate\">{rate:.1}% of {tests} {} in {} {}</span></div>",
        plural(tests, "test"),
        summary.runs,
        plural(summary.runs, "run"),
    );
}

fn plural(n: u64, noun: &str) -> String {
    match n {
        1 => noun.to_owned(),
        _ => format!("{noun}s"),
    }
}

fn results(view: Option<&View>) -> String {
    let mut out = String::from(
        "<table id=\"results\">\n<thead><tr><th>Suite</th><th>Passed</th><th>Failed</th>\
         <th>Duration</th><th>Time</th></tr></thead>\n<tbody>\n",
    );
    for record in view.map(|v| v.results.as_slice()).unwrap_or_default() {
        row(&mut out, record);
    }
    out.push_str("</tbody>\n</table>");
    out
}

fn row(out: &mut String, record: &Record) {
    let suite = escape(&record.suite);
    let time = escape(&record.time);
    let _ = writeln!(
        out,
        "<tr class=\"result\" data-suite=\"{suite}\" data-id=\"{}\"><td>{suite}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.2} s</td>\
         <td><time datetime=\"{time}\">{time}</time></td></tr>",
        escape(&record.id),
        record.passed,
        record.failed,
        record.duration_seconds,
    );
}

fn form(values: &FormValues) -> String {
    let field = |label: &str, name: &str, value: &str, attributes: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" value=\"{}\" {attributes} required></label>",
            escape(value)
        )
    };
    format!(
        "<form id=\"post-result\" method=\"post\" action=\"/results\">\n{}\n{}\n{}\n{}\n\
         <button type=\"submit\">Record</button>\n</form>",
        field(
            "Suite",
            "suite",
            &values.suite,
            "maxlength=\"63\" placeholder=\"unit\""
        ),
        field(
            "Passed",
            "passed",
            &values.passed,
            "type=\"number\" min=\"0\" step=\"1\""
        ),
        field(
            "Failed",
            "failed",
            &values.failed,
            "type=\"number\" min=\"0\" step=\"1\""
        ),
        field(
            "Duration (s)",
            "duration_seconds",
            &values.duration_seconds,
            "type=\"number\" min=\"0\" step=\"any\""
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x" + 'y')</script> & co"#),
            "&lt;script&gt;alert(&quot;x&quot; + &#39;y&#39;)&lt;/script&gt; &amp; co"
        );
        assert_eq!(escape("plain-suite_1.0"), "plain-suite_1.0");
    }

    #[test]
    fn page_escapes_everything_from_the_api_and_the_user() {
        let evil = "<script>alert(1)</script>\"'";
        let view = View {
            results: vec![Record {
                id: evil.into(),
                suite: evil.into(),
                passed: 2,
                failed: 1,
                duration_seconds: 1.25,
                time: evil.into(),
            }],
            summary: vec![Summary {
                suite: evil.into(),
                runs: 1,
                passed: 2,
                failed: 1,
                pass_rate: 200.0 / 3.0,
            }],
            api_pod: Some(evil.into()),
        };
        let form = FormValues {
            suite: evil.into(),
            ..FormValues::default()
        };
        let html = render(&Page {
            title: evil,
            pod: evil,
            api_url: evil,
            view: Some(&view),
            error: Some(evil),
            form: &form,
        });
        // The page's own script is the only one.
        assert_eq!(html.matches("<script>").count(), 1, "{html}");
        assert!(!html.contains("alert(1)</script>"));
        assert!(html.contains("<p id=\"error\" role=\"alert\">&lt;script&gt;"));
        assert!(html.contains("data-pass-rate=\"66.7\" style=\"width:66.7%\""));
        assert!(html.contains("<td class=\"num\">1.25 s</td>"));
    }

    #[test]
    fn page_without_the_api_still_renders_its_parts() {
        let html = render(&Page {
            title: "t",
            pod: "ui-0",
            api_url: "http://results-api:8080",
            view: None,
            error: Some("cannot reach the results API at http://results-api:8080"),
            form: &FormValues::default(),
        });
        for part in [
            "id=\"summary\"",
            "id=\"results\"",
            "id=\"post-result\"",
            "<span id=\"served-by\">ui-0</span>",
            "<span id=\"api-served-by\">unknown</span>",
        ] {
            assert!(html.contains(part), "{part} missing from {html}");
        }
    }
}
