//! The deployment as `infra/template.yaml` describes it, resolved for this
//! machine: each function's environment, timeout, queue trigger and IAM
//! policy, with the template's references (`Ref`, `Fn::GetAtt`) turned into
//! the local tables', queues' and secret's names and ARNs. The template is
//! the one definition: `make dev` and the end-to-end tests run the functions
//! with exactly these settings and permissions.

use std::collections::BTreeMap;
use std::time::Duration;

use hooks_core::settings::ResourceNames;
use hooks_core::store::schema::{CONFIG_TABLE, DEAD_LETTER_QUEUE, EVENTS_QUEUE};
use hooks_core::store::schema::{EVENTS_TABLE, QueueDef, TableDef};
use serde_json::Value;

/// The repository's template, as built into this program.
pub const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The account and region the emulator answers as.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// What a reference resolves to on this machine.
#[derive(Debug, Clone)]
pub struct Local {
    pub names: ResourceNames,
    /// Template parameters given here; the others take their defaults.
    pub parameters: BTreeMap<String, String>,
}

/// One IAM policy statement (Allow only: the template has no Deny).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

impl Statement {
    /// Whether it allows `action` (`dynamodb:GetItem`) on `resource` (an
    /// ARN; one with `?` in it, a secret named by its name, stands for the
    /// ARNs it matches).
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.actions
            .iter()
            .any(|a| glob(&a.to_lowercase(), &action.to_lowercase()))
            && self
                .resources
                .iter()
                .any(|r| glob(r, resource) || (resource.contains('?') && glob(resource, r)))
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An SQS trigger of a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTrigger {
    pub batch_size: usize,
    /// At most this many invocations at once.
    pub max_concurrency: usize,
}

/// One function of the template.
#[derive(Debug, Clone)]
pub struct Function {
    /// Its logical id (`IngestFunction`).
    pub logical: String,
    /// The binary cargo-lambda builds (`ingest`).
    pub binary: String,
    pub timeout: Duration,
    /// The environment the template gives it (globals and its own).
    pub env: BTreeMap<String, String>,
    pub policy: Vec<Statement>,
    pub trigger: Option<QueueTrigger>,
}

impl Function {
    /// Whether its policy allows `action` on `resource`.
    pub fn allows(&self, action: &str, resource: &str) -> bool {
        self.policy.iter().any(|s| s.allows(action, resource))
    }
}

/// The functions of the template, resolved for this machine.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub functions: Vec<Function>,
}

/// `AWS::StackName` on this machine: the `Stack` dimension of the local
/// functions' metric lines.
pub const LOCAL_STACK_NAME: &str = "hooks-local";

/// ARNs on this machine.
pub fn table_arn(name: &str) -> String {
    format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}")
}

pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

impl Deployment {
    /// The repository's template.
    pub fn from_repository(local: &Local) -> Result<Deployment, String> {
        Self::parse(TEMPLATE, local)
    }

    pub fn parse(text: &str, local: &Local) -> Result<Deployment, String> {
        let t: Value = serde_norway::from_str(text).map_err(|e| format!("template: {e}"))?;
        let r = Resolver { t: &t, local };
        let mut functions = Vec::new();
        let resources = t["Resources"].as_object().ok_or("template: no Resources")?;
        for (logical, res) in resources {
            if res["Type"] != "AWS::Serverless::Function" {
                continue;
            }
            functions.push(r.function(logical, res)?);
        }
        Ok(Deployment { functions })
    }

    /// The function built from `binary`.
    pub fn function(&self, binary: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

struct Resolver<'a> {
    t: &'a Value,
    local: &'a Local,
}

impl Resolver<'_> {
    /// The template's `Globals.Function`: what every function has unless it
    /// says otherwise.
    fn globals(&self) -> &Value {
        &self.t["Globals"]["Function"]
    }

    /// The function of resource `logical` (an `AWS::Serverless::Function`).
    fn function(&self, logical: &str, res: &Value) -> Result<Function, String> {
        let p = &res["Properties"];
        let env = self.environment(p)?;
        let timeout = p["Timeout"]
            .as_u64()
            .or_else(|| self.globals()["Timeout"].as_u64())
            .unwrap_or(3);
        let policy = self.policy(logical, p)?;
        let trigger = self.trigger(p);
        Ok(Function {
            logical: logical.to_owned(),
            binary: res["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .ok_or_else(|| format!("{logical}: no Metadata.BuildProperties.Binary"))?
                .to_owned(),
            timeout: Duration::from_secs(timeout),
            env,
            policy,
            trigger,
        })
    }

    /// A function's environment variables, resolved: the globals', then
    /// its own (which win).
    fn environment(&self, p: &Value) -> Result<BTreeMap<String, String>, String> {
        let mut env = BTreeMap::new();
        for vars in [
            &self.globals()["Environment"]["Variables"],
            &p["Environment"]["Variables"],
        ] {
            if let Some(vars) = vars.as_object() {
                for (k, v) in vars {
                    env.insert(k.clone(), self.resolve(v)?);
                }
            }
        }
        Ok(env)
    }

    /// A function's policy statements, resolved. Only what the gateway can
    /// enforce as IAM would is accepted: inline documents of plain Allow
    /// statements; anything else is refused rather than half understood.
    fn policy(&self, logical: &str, p: &Value) -> Result<Vec<Statement>, String> {
        let mut policy = Vec::new();
        for doc in p["Policies"].as_array().into_iter().flatten() {
            let Some(statements) = doc["Statement"].as_array() else {
                return Err(format!(
                    "{logical}: only inline policy documents are understood here (not managed policies or SAM policy templates): {doc}"
                ));
            };
            for s in statements {
                let plain = s["Effect"] == "Allow"
                    && ["Condition", "NotAction", "NotResource", "NotPrincipal"]
                        .iter()
                        .all(|k| s.get(*k).is_none());
                if !plain {
                    return Err(format!(
                        "{logical}: only Allow statements of Action and Resource, without Condition, are understood here: {s}"
                    ));
                }
                policy.push(Statement {
                    sid: s["Sid"].as_str().unwrap_or("").to_owned(),
                    actions: self.list(&s["Action"])?,
                    resources: self.list(&s["Resource"])?,
                });
            }
        }
        Ok(policy)
    }

    /// A function's SQS trigger, if it has one (of several, the last).
    fn trigger(&self, p: &Value) -> Option<QueueTrigger> {
        let mut trigger = None;
        for ev in p["Events"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, e)| e)
        {
            if ev["Type"] == "SQS" {
                let ep = &ev["Properties"];
                trigger = Some(QueueTrigger {
                    batch_size: ep["BatchSize"].as_u64().unwrap_or(10) as usize,
                    max_concurrency: self
                        .resolve(&ep["ScalingConfig"]["MaximumConcurrency"])
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(2),
                });
            }
        }
        trigger
    }

    fn list(&self, v: &Value) -> Result<Vec<String>, String> {
        match v {
            Value::Array(items) => items.iter().map(|i| self.resolve(i)).collect(),
            one => Ok(vec![self.resolve(one)?]),
        }
    }

    fn resolve(&self, v: &Value) -> Result<String, String> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Object(o) if o.len() == 1 => {
                if let Some(Value::String(name)) = o.get("Ref") {
                    return self.reference(name);
                }
                if let Some(Value::Array(a)) = o.get("Fn::GetAtt")
                    && let [Value::String(res), Value::String(attr)] = a.as_slice()
                {
                    return self.attribute(res, attr);
                }
                Err(format!("template: cannot resolve {v} locally"))
            }
            other => Err(format!("template: cannot resolve {other} locally")),
        }
    }

    fn reference(&self, name: &str) -> Result<String, String> {
        if name == "AWS::StackName" {
            return Ok(LOCAL_STACK_NAME.to_owned());
        }
        if let Some(p) = self.t["Parameters"].get(name) {
            return match self.local.parameters.get(name) {
                Some(v) => Ok(v.clone()),
                None => self.resolve(&p["Default"]).map_err(|_| {
                    format!("template parameter {name} has no default: give it a local value")
                }),
            };
        }
        // A table's Ref is its name.
        self.table(name)
            .map(|(_, n)| n)
            .ok_or_else(|| format!("template: Ref {name} has no local value"))
    }

    fn attribute(&self, res: &str, attr: &str) -> Result<String, String> {
        if let Some((_, name)) = self.table(res)
            && attr == "Arn"
        {
            return Ok(table_arn(&name));
        }
        if let Some(name) = self.queue(res) {
            return match attr {
                "Arn" => Ok(queue_arn(&name)),
                "QueueName" => Ok(name),
                "QueueUrl" => Ok(format!(
                    "https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
                )),
                _ => Err(format!("template: {res}.{attr} has no local value")),
            };
        }
        Err(format!("template: {res}.{attr} has no local value"))
    }

    fn table(&self, logical: &str) -> Option<(TableDef, String)> {
        let n = &self.local.names;
        [
            (CONFIG_TABLE, &n.config_table),
            (EVENTS_TABLE, &n.events_table),
        ]
        .into_iter()
        .find(|(d, _)| format!("{}Table", d.logical) == logical)
        .map(|(d, name)| (d, name.clone()))
    }

    fn queue(&self, logical: &str) -> Option<String> {
        let n = &self.local.names;
        [
            (EVENTS_QUEUE, &n.queue),
            (DEAD_LETTER_QUEUE, &n.dead_letter_queue),
        ]
        .into_iter()
        .find(|(d, _): &(QueueDef, _)| format!("{}Queue", d.logical) == logical)
        .map(|(_, name)| name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Local {
        Local {
            names: ResourceNames::prefixed("t"),
            parameters: BTreeMap::from([(
                "SecretsArn".to_owned(),
                format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dev-AbCdEf"),
            )]),
        }
    }

    #[test]
    fn the_template_resolves_for_this_machine() {
        let d = Deployment::from_repository(&local()).unwrap();
        let dispatch = d.function("dispatch").unwrap();
        assert_eq!(dispatch.env["HOOKS_EVENTS_TABLE"], "t-events");
        assert_eq!(dispatch.env["HOOKS_QUEUE_NAME"], "t-events.fifo");
        assert!(dispatch.env["HOOKS_SECRETS_ARN"].ends_with(":secret:dev-AbCdEf"));
        assert_eq!(dispatch.timeout, Duration::from_secs(60));
        assert_eq!(
            dispatch.env["HOOKS_SCRIPTS_DIR"], "/opt",
            "the scripts layer"
        );
        let trigger = dispatch.trigger.unwrap();
        assert_eq!(trigger.batch_size, 10);
        assert!(trigger.max_concurrency >= 2);
        assert!(dispatch.allows("dynamodb:PutItem", &table_arn("t-events")));
        assert!(!dispatch.allows("dynamodb:DeleteItem", &table_arn("t-events")));
        // Dispatch writes its handler-state items; ingest writes nothing there.
        assert!(dispatch.allows("dynamodb:UpdateItem", &table_arn("t-config")));
        assert!(!dispatch.allows("dynamodb:PutItem", &table_arn("t-config")));
        assert!(!dispatch.allows("dynamodb:DeleteItem", &table_arn("t-config")));
        assert!(!dispatch.allows("dynamodb:TransactWriteItems", &table_arn("t-config")));
        let ingest = d.function("ingest").unwrap();
        assert!(!ingest.allows("dynamodb:PutItem", &table_arn("t-config")));
        assert!(ingest.allows("sqs:SendMessage", &queue_arn("t-events.fifo")));
        assert!(!ingest.allows("sqs:SendMessage", &queue_arn("t-dead-letters.fifo")));
        assert!(ingest.trigger.is_none());
    }

    #[test]
    fn what_the_local_check_cannot_judge_is_refused_not_ignored() {
        let with = |extra: &str| {
            TEMPLATE.replacen(
                "            - Sid: Secrets\n              Effect: Allow\n",
                &format!("            - Sid: Secrets\n              Effect: Allow\n{extra}"),
                1,
            )
        };
        let conditioned = with("              Condition: {Bool: {aws:SecureTransport: true}}\n");
        assert_ne!(conditioned, TEMPLATE);
        let e = Deployment::parse(&conditioned, &local()).unwrap_err();
        assert!(e.contains("without Condition"), "{e}");
    }

    #[test]
    fn a_secret_named_by_its_name_matches_its_arn() {
        let d = Deployment::from_repository(&local()).unwrap();
        let ingest = d.function("ingest").unwrap();
        let by_name = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:dev-??????");
        assert!(ingest.allows("secretsmanager:GetSecretValue", &by_name));
        let other = format!("arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:other-??????");
        assert!(!ingest.allows("secretsmanager:GetSecretValue", &other));
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(glob(
            "arn:aws:dynamodb:*:*:table/t-logs/index/*",
            "arn:aws:dynamodb:us-east-1:1:table/t-logs/index/by_day"
        ));
        assert!(!glob(
            "arn:aws:dynamodb:*:*:table/t-logs",
            "arn:aws:dynamodb:us-east-1:1:table/t-logs/index/by_day"
        ));
        assert!(glob("dynamodb:*", "dynamodb:query"));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
    }
}
