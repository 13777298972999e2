//! The self-declaration form (the five groups of fields) and the review's outcome. The form
//! is checked here field by field first (choices, control characters) and then with
//! `Declaration::check`, the console's own validation, so each error is shown beside its
//! field; only a form that passes is sent to the node, which checks it again and stores it.
//! The home is the session's, whatever the form says. The same form declares a dependent
//! of the home by proxy (`views::dependent`): then it also asks who declares (`by`).

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use menjin_community::households::Household;
use menjin_proto::civil::Date;
use menjin_proto::declaration::{
    Declaration, DeclarationError, Gender, Outcome, PersonType, Quarantine, Tenure,
};
use menjin_proto::idnum::DocumentType;
use menjin_proto::wire::Response as NodeResponse;
use serde::Deserialize;

use super::{Page, cst, lang, open, posting};
use crate::App;
use crate::i18n::Text;

/// The form as posted: every field a string, so a wrong choice is a field error, not a
/// refused request.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeclareForm {
    pub(crate) csrf: String,
    /// The declaring member (a dependent's form only): a holder id.
    pub(crate) by: String,
    pub(crate) name: String,
    pub(crate) gender: String,
    pub(crate) document_type: String,
    pub(crate) document_number: String,
    pub(crate) birth_date: String,
    pub(crate) nationality: String,
    pub(crate) phone: String,
    pub(crate) person_type: String,
    pub(crate) quarantine: String,
    pub(crate) tenure: String,
    pub(crate) travel_high_risk: Option<String>,
    pub(crate) contact_with_case: Option<String>,
    pub(crate) symptoms: Option<String>,
    pub(crate) underlying_conditions: String,
    /// Typed only on the clerk's paper form (a home's session knows its own).
    pub(crate) building: String,
    pub(crate) door: String,
}

impl DeclareForm {
    /// Sets the field `name` from a multipart part (the clerk's form); `false` for a name
    /// that is no field of the form.
    pub(crate) fn set(&mut self, name: &str, value: String) -> bool {
        let slot = match name {
            "csrf" => &mut self.csrf,
            "name" => &mut self.name,
            "gender" => &mut self.gender,
            "document_type" => &mut self.document_type,
            "document_number" => &mut self.document_number,
            "birth_date" => &mut self.birth_date,
            "nationality" => &mut self.nationality,
            "phone" => &mut self.phone,
            "person_type" => &mut self.person_type,
            "quarantine" => &mut self.quarantine,
            "tenure" => &mut self.tenure,
            "underlying_conditions" => &mut self.underlying_conditions,
            "building" => &mut self.building,
            "door" => &mut self.door,
            "travel_high_risk" => return set_flag(&mut self.travel_high_risk, value),
            "contact_with_case" => return set_flag(&mut self.contact_with_case, value),
            "symptoms" => return set_flag(&mut self.symptoms, value),
            _ => return false,
        };
        *slot = value;
        true
    }

    /// The form as first shown: the most common choices made.
    pub(crate) fn blank() -> DeclareForm {
        DeclareForm {
            nationality: "CN".into(),
            document_type: "resident_id".into(),
            quarantine: "none".into(),
            ..DeclareForm::default()
        }
    }
}

fn set_flag(flag: &mut Option<String>, value: String) -> bool {
    *flag = Some(value);
    true
}

/// Errors by field name (at most one per field, in form order).
#[derive(Default)]
pub(crate) struct Errors(Vec<(&'static str, &'static str)>);

impl Errors {
    pub(crate) fn add(&mut self, field: &'static str, message: &'static str) {
        if self.get(field).is_none() {
            self.0.push((field, message));
        }
    }
    pub(crate) fn get(&self, field: &str) -> Option<&'static str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, m)| *m)
    }
    pub(crate) fn class(&self, field: &str) -> &'static str {
        if self.get(field).is_some() {
            "has-err"
        } else {
            ""
        }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "declare.html")]
pub(crate) struct DeclarePage {
    pub(crate) p: Page,
    pub(crate) f: DeclareForm,
    pub(crate) errors: Errors,
    /// What the node refused, if it did (a rule, not a field).
    pub(crate) refusal: String,
    pub(crate) building: String,
    pub(crate) door: String,
    /// Where the form posts, and its words.
    pub(crate) action: &'static str,
    pub(crate) title: &'static str,
    pub(crate) help: &'static str,
    /// A dependent's form: the members who may declare for them (holder id, name).
    pub(crate) proxies: Vec<(String, String)>,
    /// The residence is typed in (the clerk's form), not the session's home.
    pub(crate) typed_home: bool,
}

/// Which declaration the form is.
pub(crate) enum Kind {
    /// The person declares themself (or another adult of the home types it for them).
    Own,
    /// A dependent declared by one of these members (holder id, name): the proxy rule.
    Dependent(Vec<(String, String)>),
}

#[derive(Template, WebTemplate)]
#[template(path = "result.html")]
pub(crate) struct ResultPage {
    pub(crate) p: Page,
    pub(crate) name: String,
    pub(crate) outcome: &'static str,
    pub(crate) outcome_text: &'static str,
    pub(crate) class: &'static str,
    pub(crate) why: String,
    pub(crate) qr: Option<std::sync::Arc<str>>,
    pub(crate) code: String,
    pub(crate) now_ms: u64,
    pub(crate) now_text: String,
}

fn choice<T: Copy>(
    errors: &mut Errors,
    field: &'static str,
    value: &str,
    options: &[(&str, T)],
    t: &Text,
) -> Option<T> {
    let found = options.iter().find(|(k, _)| *k == value).map(|(_, v)| *v);
    if found.is_none() {
        errors.add(field, t.e_choose);
    }
    found
}

/// Control characters in any text field: its error beside it.
fn control_chars(f: &DeclareForm, home: (&str, &str), t: &Text, errors: &mut Errors) {
    let texts: [(&'static str, &str); 8] = [
        ("name", &f.name),
        ("document_number", &f.document_number),
        ("birth_date", &f.birth_date),
        ("nationality", &f.nationality),
        ("phone", &f.phone),
        ("underlying_conditions", &f.underlying_conditions),
        ("building", home.0),
        ("door", home.1),
    ];
    for (field, value) in texts {
        if value.chars().any(char::is_control) {
            errors.add(field, t.e_control);
        }
    }
}

/// The form as a declaration at `home` (building and door), or the errors to show beside
/// each field. The resident pages pass the session's home; the clerk's form what was typed.
pub(crate) fn parse(
    f: &DeclareForm,
    home: (&str, &str),
    t: &Text,
    today: Date,
) -> Result<Declaration, Errors> {
    let mut errors = Errors::default();
    control_chars(f, home, t, &mut errors);
    let gender = choice(
        &mut errors,
        "gender",
        &f.gender,
        &[("male", Gender::Male), ("female", Gender::Female)],
        t,
    );
    let document_type = choice(
        &mut errors,
        "document_type",
        &f.document_type,
        &[
            ("resident_id", DocumentType::ResidentId),
            ("hk_macao_permit", DocumentType::HkMacaoPermit),
            ("taiwan_permit", DocumentType::TaiwanPermit),
            ("passport", DocumentType::Passport),
        ],
        t,
    );
    let person_type = choice(
        &mut errors,
        "person_type",
        &f.person_type,
        &[
            ("owner", PersonType::Owner),
            ("tenant", PersonType::Tenant),
            ("household", PersonType::Household),
            ("shop_staff", PersonType::ShopStaff),
        ],
        t,
    );
    let quarantine = choice(
        &mut errors,
        "quarantine",
        &f.quarantine,
        &[
            ("none", Quarantine::None),
            ("home", Quarantine::Home),
            ("central", Quarantine::Central),
            ("hospital", Quarantine::Hospital),
        ],
        t,
    );
    let tenure = choice(
        &mut errors,
        "tenure",
        &f.tenure,
        &[("owned", Tenure::Owned), ("rented", Tenure::Rented)],
        t,
    );
    let (Some(gender), Some(document_type), Some(person_type), Some(quarantine), Some(tenure)) =
        (gender, document_type, person_type, quarantine, tenure)
    else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let form = Declaration {
        name: f.name.trim().to_string(),
        gender,
        document_type,
        document_number: f.document_number.trim().to_ascii_uppercase(),
        birth_date: Some(f.birth_date.trim().to_string()).filter(|d| !d.is_empty()),
        nationality: f.nationality.trim().to_string(),
        phone: f.phone.trim().to_string(),
        person_type,
        quarantine,
        building: home.0.trim().to_string(),
        door: home.1.trim().to_string(),
        tenure,
        travel_high_risk: f.travel_high_risk.is_some(),
        contact_with_case: f.contact_with_case.is_some(),
        symptoms: f.symptoms.is_some(),
        underlying_conditions: f.underlying_conditions.trim().to_string(),
    };
    // The console's own validation: the first wrong field, named.
    if let Err(e) = form.check(today) {
        let (field, message) = match e {
            DeclarationError::Missing(field) => (field, t.e_required),
            DeclarationError::Invalid {
                field: "building/door",
                ..
            } => ("building", t.e_home),
            DeclarationError::Invalid { field, why } => (field, invalid_message(field, &why, t)),
            _ => ("name", t.form_has_errors),
        };
        errors.add(field, message);
        return Err(errors);
    }
    Ok(form)
}

/// A field's error in the page's language. Never the `why` of the document number: it may
/// quote digits of it.
fn invalid_message(field: &str, why: &str, t: &Text) -> &'static str {
    match field {
        "document_number" => t.e_doc_number,
        "gender" => t.e_gender,
        "birth_date" => t.e_birth,
        "phone" if why.starts_with("only") => t.e_phone,
        _ if why.contains("control") => t.e_control,
        _ => t.e_too_long,
    }
}

pub(crate) async fn page(State(app): State<App>, headers: HeaderMap) -> Response {
    let o = match open(&app, &headers) {
        Ok(o) => o,
        Err(resp) => return resp,
    };
    let f = DeclareForm::blank();
    form_page(
        lang(&headers).text(),
        o.session.csrf,
        &o.home,
        f,
        Errors::default(),
        String::new(),
        Kind::Own,
    )
    .into_response()
}

pub(crate) fn form_page(
    t: &'static Text,
    csrf: String,
    home: &Household,
    f: DeclareForm,
    errors: Errors,
    refusal: String,
    kind: Kind,
) -> DeclarePage {
    let (back, action, title, help, proxies) = match kind {
        Kind::Own => (
            "/declare",
            "/declare",
            t.declare_title,
            t.declare_help,
            vec![],
        ),
        Kind::Dependent(p) => (
            "/my/dependent",
            "/my/dependent",
            t.dependent_title,
            t.dependent_help,
            p,
        ),
    };
    DeclarePage {
        p: Page { t, csrf, back },
        f: DeclareForm {
            csrf: String::new(),
            ..f
        },
        errors,
        refusal,
        building: home.building.clone(),
        door: home.door.clone(),
        action,
        title,
        help,
        proxies,
        typed_home: false,
    }
}

pub(crate) async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<DeclareForm>,
) -> Response {
    let (o, t) = match posting(&app, &headers, &f.csrf) {
        Ok(posted) => posted,
        Err(resp) => return resp,
    };
    let now_ms = menjin_net::clock::now_ms();
    let now = now_ms / 1000;
    let home = (o.home.building.as_str(), o.home.door.as_str());
    let form = match parse(&f, home, t, Date::from_unix(now)) {
        Ok(form) => form,
        Err(errors) => {
            let page = form_page(
                t,
                o.session.csrf,
                &o.home,
                f,
                errors,
                String::new(),
                Kind::Own,
            );
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
    };
    let node = app.node.clone();
    let home = o.home.clone();
    let answer =
        tokio::task::spawn_blocking(move || node.declare_in_household(&home, form, now)).await;
    let receipt = match answer {
        Ok(NodeResponse::Declared(r)) => r,
        Ok(NodeResponse::Error { message, .. }) => {
            let page = form_page(
                t,
                o.session.csrf,
                &o.home,
                f,
                Errors::default(),
                message,
                Kind::Own,
            );
            return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
        }
        Ok(other) => {
            return super::internal(&format!(
                "unexpected answer {:?}",
                std::mem::discriminant(&other)
            ));
        }
        Err(e) => return super::internal(&e.to_string()),
    };
    result_page(&app, t, o.session.csrf, receipt, now_ms)
}

/// The review's outcome at once: the code as a QR when cleared.
pub(crate) fn result_page(
    app: &App,
    t: &'static Text,
    csrf: String,
    receipt: menjin_proto::wire::Receipt,
    now_ms: u64,
) -> Response {
    let (class, outcome) = if receipt.outcome == Outcome::Cleared {
        ("ok", "cleared")
    } else {
        ("bad", receipt.outcome.as_str())
    };
    let code = receipt.code.unwrap_or_default();
    ResultPage {
        p: Page {
            t,
            csrf,
            back: "/my",
        },
        name: receipt.name,
        outcome,
        outcome_text: t.outcome(receipt.outcome),
        class,
        why: t.why(&receipt.why),
        qr: Some(&code)
            .filter(|c| !c.is_empty())
            .and_then(|c| app.qr.svg(c)),
        code,
        now_ms,
        now_text: cst(now_ms / 1000, true),
    }
    .into_response()
}
