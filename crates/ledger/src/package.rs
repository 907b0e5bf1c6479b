//! Template packages: one TOML file each (see `examples/packages/iou.toml`), parsed and
//! fully validated on upload so that interpretation never meets a malformed template.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::LedgerError;
use crate::script::Script;
use crate::types::{
    PackageId, TemplateId, Type, check_field_name, check_package_name, check_template_name,
    check_upper_ident,
};

/// The implicit consuming choice of every template; its controllers are the signatories.
pub const ARCHIVE: &str = "Archive";

#[derive(Clone, Debug)]
pub struct Package {
    pub id: PackageId,
    pub name: String,
    pub version: String,
    pub templates: BTreeMap<String, Template>,
}

#[derive(Clone, Debug)]
pub struct Template {
    pub name: String,
    /// Always a `Type::Record`.
    pub payload_type: Type,
    pub signatories: Script,
    pub observers: Option<Script>,
    pub ensure: Option<Script>,
    pub key: Option<Key>,
    pub choices: BTreeMap<String, Choice>,
}

/// A template's contract key (Daml's `key` with `maintainer`): at most one active contract
/// of the template has a given key; its maintainers, computed from the key alone, are
/// signatories and enforce that.
#[derive(Clone, Debug)]
pub struct Key {
    pub ty: Type,
    /// Over `this`: the key of a payload.
    pub script: Script,
    /// Over `key`: the key's maintainers, a non-empty subset of the signatories.
    pub maintainers: Script,
}

#[derive(Clone, Debug)]
pub struct Choice {
    pub name: String,
    pub controllers: Script,
    /// Choice observers (Daml's `observer` on a choice): informees of the exercise, shown
    /// it in their transaction trees; they do not confirm it.
    pub observers: Option<Script>,
    pub consuming: bool,
    /// Always a `Type::Record`.
    pub argument_type: Type,
    pub returns: Type,
    pub body: Option<Script>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: String,
    version: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    templates: BTreeMap<String, RawTemplate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    #[serde(default)]
    fields: toml::Table,
    signatories: String,
    observers: Option<String>,
    ensure: Option<String>,
    key: Option<String>,
    key_type: Option<toml::Value>,
    maintainers: Option<String>,
    #[serde(default)]
    choices: BTreeMap<String, RawChoice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChoice {
    controllers: String,
    observers: Option<String>,
    #[serde(default = "yes")]
    consuming: bool,
    #[serde(default)]
    argument: toml::Table,
    returns: Option<toml::Value>,
    body: Option<String>,
}

fn yes() -> bool {
    true
}

impl Package {
    /// Parses and validates a package file; the package id is the SHA-256 of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Package, LedgerError> {
        let id = PackageId::of_bytes(bytes);
        let invalid = |package: &str, message: String| LedgerError::InvalidPackage {
            package: package.to_owned(),
            message,
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| invalid(&id.to_string(), format!("not UTF-8: {e}")))?;
        let raw: RawPackage = toml::from_str(text)
            .map_err(|e| invalid(&id.to_string(), format!("not a valid package file: {e}")))?;
        check_package_name(&raw.name).map_err(|e| invalid(&raw.name, e.to_string()))?;
        if raw.templates.is_empty() {
            return Err(invalid(&raw.name, "declares no templates".into()));
        }
        let names: Vec<&str> = raw.templates.keys().map(String::as_str).collect();
        let mut templates = BTreeMap::new();
        for (tname, rt) in &raw.templates {
            let t = template(tname, rt, &names)
                .map_err(|m| invalid(&raw.name, format!("template {tname}{m}")))?;
            templates.insert(tname.clone(), t);
        }
        Ok(Package {
            id,
            name: raw.name,
            version: raw.version,
            templates,
        })
    }

    pub fn template(&self, name: &str) -> Option<&Template> {
        self.templates.get(name)
    }
}

/// Errors are returned as the rest of a message that starts with `template <name>`.
fn template(name: &str, rt: &RawTemplate, names: &[&str]) -> Result<Template, String> {
    check_template_name(name).map_err(|e| format!(": {e}"))?;
    let payload_type = record_type(&rt.fields, names).map_err(|e| format!(", fields: {e}"))?;
    let script = |what: &str, src: &str| {
        if src.trim().is_empty() {
            return Err(format!(": {what} is empty"));
        }
        Script::compile(src).map_err(|e| format!(": {what} does not compile: {e}"))
    };
    let key = match (&rt.key, &rt.key_type, &rt.maintainers) {
        (Some(src), Some(ty), Some(maintainers)) => Some(Key {
            ty: field_type(ty, names).map_err(|e| format!(", key_type: {e}"))?,
            script: script("key", src)?,
            maintainers: if maintainers.trim().is_empty() {
                return Err(": maintainers is empty".into());
            } else {
                Script::compile_over(maintainers, "key")
                    .map_err(|e| format!(": maintainers does not compile: {e}"))?
            },
        }),
        (None, None, None) => None,
        _ => return Err(": `key`, `key_type` and `maintainers` go together".into()),
    };
    let mut choices = BTreeMap::new();
    for (cname, rc) in &rt.choices {
        let c = choice(cname, rc, names).map_err(|m| format!(", choice {cname}{m}"))?;
        choices.insert(cname.clone(), c);
    }
    Ok(Template {
        name: name.to_owned(),
        payload_type,
        signatories: script("signatories", &rt.signatories)?,
        observers: rt
            .observers
            .as_deref()
            .map(|s| script("observers", s))
            .transpose()?,
        ensure: rt
            .ensure
            .as_deref()
            .map(|s| script("ensure", s))
            .transpose()?,
        key,
        choices,
    })
}

fn choice(name: &str, rc: &RawChoice, names: &[&str]) -> Result<Choice, String> {
    check_upper_ident(name, "choice name").map_err(|e| format!(": {e}"))?;
    if name == ARCHIVE {
        return Err(": Archive is implicit on every template and cannot be redefined".into());
    }
    if rc.controllers.trim().is_empty() {
        return Err(": controllers is empty".into());
    }
    let controllers = Script::compile(&rc.controllers)
        .map_err(|e| format!(": controllers does not compile: {e}"))?;
    let body = rc
        .body
        .as_deref()
        .map(|s| Script::compile(s).map_err(|e| format!(": body does not compile: {e}")))
        .transpose()?;
    let observers = rc
        .observers
        .as_deref()
        .map(|s| Script::compile(s).map_err(|e| format!(": observers does not compile: {e}")))
        .transpose()?;
    Ok(Choice {
        name: name.to_owned(),
        controllers,
        observers,
        consuming: rc.consuming,
        argument_type: record_type(&rc.argument, names).map_err(|e| format!(", argument: {e}"))?,
        returns: match &rc.returns {
            Some(t) => field_type(t, names).map_err(|e| format!(", returns: {e}"))?,
            None => Type::Unit,
        },
        body,
    })
}

fn record_type(table: &toml::Table, names: &[&str]) -> Result<Type, String> {
    let mut fields = BTreeMap::new();
    for (fname, fty) in table {
        check_field_name(fname).map_err(|e| e.to_string())?;
        let ty = field_type(fty, names).map_err(|e| format!("field {fname}: {e}"))?;
        fields.insert(fname.clone(), ty);
    }
    Ok(Type::Record(fields))
}

/// A type string (`"list<party>"`) or a TOML table (an inline record).
fn field_type(v: &toml::Value, names: &[&str]) -> Result<Type, String> {
    let ty = match v {
        toml::Value::String(s) => Type::parse(s)?,
        toml::Value::Table(t) => record_type(t, names)?,
        other => return Err(format!("expected a type string or a table, got {other}")),
    };
    check_template_refs(&ty, names)?;
    Ok(ty)
}

/// `contract_id<T>` without a package prefix must name a template of this package.
fn check_template_refs(ty: &Type, names: &[&str]) -> Result<(), String> {
    match ty {
        Type::ContractId(Some(t)) if !t.contains(':') && !names.contains(&t.as_str()) => Err(
            format!("contract_id<{t}> names no template of this package"),
        ),
        Type::Optional(t) | Type::List(t) => check_template_refs(t, names),
        Type::Record(fields) => fields
            .values()
            .try_for_each(|t| check_template_refs(t, names)),
        _ => Ok(()),
    }
}

/// The loaded packages: one version per package name.
#[derive(Clone, Debug, Default)]
pub struct PackageStore {
    by_name: BTreeMap<String, Arc<Package>>,
    names_by_id: BTreeMap<PackageId, String>,
}

impl PackageStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and adds a package file. Uploading the same bytes again is a no-op; another
    /// package under a bound name is an error.
    pub fn upload(&mut self, bytes: &[u8]) -> Result<Arc<Package>, LedgerError> {
        self.add(Package::parse(bytes)?)
    }

    pub fn add(&mut self, package: Package) -> Result<Arc<Package>, LedgerError> {
        if let Some(existing) = self.by_name.get(&package.name) {
            if existing.id == package.id {
                return Ok(existing.clone());
            }
            return Err(LedgerError::PackageConflict {
                name: package.name.clone(),
                existing: existing.id.to_string(),
            });
        }
        let package = Arc::new(package);
        self.names_by_id.insert(package.id, package.name.clone());
        self.by_name.insert(package.name.clone(), package.clone());
        Ok(package)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Package>> {
        self.by_name.get(name)
    }

    pub fn by_id(&self, id: &PackageId) -> Option<&Arc<Package>> {
        self.names_by_id.get(id).and_then(|n| self.by_name.get(n))
    }

    pub fn packages(&self) -> impl Iterator<Item = &Arc<Package>> {
        self.by_name.values()
    }

    /// The package and template of `id`, or `UnknownPackage` / `UnknownTemplate`.
    pub fn template(&self, id: &TemplateId) -> Result<(&Arc<Package>, &Template), LedgerError> {
        let package = self
            .by_name
            .get(&id.package_name)
            .ok_or_else(|| LedgerError::UnknownPackage(id.package_name.clone()))?;
        let template = package
            .template(&id.template)
            .ok_or_else(|| LedgerError::UnknownTemplate(id.clone()))?;
        Ok((package, template))
    }

    /// Reads a create payload for `template` from the API's JSON; errors name `payload.<field>`.
    pub fn payload_from_json(
        &self,
        template: &TemplateId,
        json: &serde_json::Value,
    ) -> Result<crate::Value, LedgerError> {
        let (_, t) = self.template(template)?;
        crate::Value::from_json_at(&t.payload_type, json, "payload")
    }

    /// Reads a contract key of `template` from the API's JSON; errors name `key.<field>`.
    pub fn key_from_json(
        &self,
        template: &TemplateId,
        json: &serde_json::Value,
    ) -> Result<crate::Value, LedgerError> {
        let (_, t) = self.template(template)?;
        let key = t.key.as_ref().ok_or_else(|| LedgerError::Type {
            path: "key".into(),
            message: format!("template {template} has no contract key"),
        })?;
        crate::Value::from_json_at(&key.ty, json, "key")
    }

    /// Reads a choice argument from the API's JSON; errors name `argument.<field>`.
    pub fn argument_from_json(
        &self,
        template: &TemplateId,
        choice: &str,
        json: &serde_json::Value,
    ) -> Result<crate::Value, LedgerError> {
        let (_, t) = self.template(template)?;
        if choice == ARCHIVE {
            return crate::Value::from_json_at(&Type::Record(BTreeMap::new()), json, "argument");
        }
        let c = t
            .choices
            .get(choice)
            .ok_or_else(|| LedgerError::UnknownChoice {
                template: template.clone(),
                choice: choice.to_owned(),
            })?;
        crate::Value::from_json_at(&c.argument_type, json, "argument")
    }
}
