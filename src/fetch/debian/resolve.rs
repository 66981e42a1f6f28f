//! The package set an install of some packages needs, as apt would choose it from one
//! `Packages` index: the closure over `Pre-Depends` and `Depends`, taking the first alternative
//! the index can satisfy, virtual packages through `Provides`, version constraints checked.
//! `Essential: yes` packages (dpkg's own tools, present wherever packages are installed, and
//! never a library) are left out together with what only they would pull in.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use super::packages::{Package, compare_versions};

/// A version relation in a dependency: `(<< 1.0)`, `(>= 2:1.2-3)`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOp {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

impl VersionOp {
    fn parse(op: &str) -> Option<VersionOp> {
        Some(match op {
            "<<" => VersionOp::Less,
            "<=" | "<" => VersionOp::LessOrEqual, // `<` is the obsolete spelling of `<=`
            "=" => VersionOp::Equal,
            ">=" | ">" => VersionOp::GreaterOrEqual,
            ">>" => VersionOp::Greater,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            VersionOp::Less => "<<",
            VersionOp::LessOrEqual => "<=",
            VersionOp::Equal => "=",
            VersionOp::GreaterOrEqual => ">=",
            VersionOp::Greater => ">>",
        }
    }
}

/// One package name in a dependency, with its version constraint if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    pub version: Option<(VersionOp, String)>,
}

impl Relation {
    /// Whether `version` satisfies the constraint.
    pub fn accepts(&self, version: &str) -> bool {
        let Some((op, wanted)) = &self.version else {
            return true;
        };
        let ord = compare_versions(version, wanted);
        match op {
            VersionOp::Less => ord.is_lt(),
            VersionOp::LessOrEqual => ord.is_le(),
            VersionOp::Equal => ord.is_eq(),
            VersionOp::GreaterOrEqual => ord.is_ge(),
            VersionOp::Greater => ord.is_gt(),
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some((op, v)) => write!(f, "{} ({} {v})", self.name, op.symbol()),
            None => f.write_str(&self.name),
        }
    }
}

/// A malformed relation field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed relation {item:?}")]
pub struct RelationError {
    pub item: String,
}

/// A `Depends`-style field: comma-separated groups of `|`-separated alternatives, each
/// `NAME[:ARCH] [(OP VERSION)] [[ARCHES]] [<PROFILES>]`. Architecture and build-profile
/// restrictions (source-package syntax) are ignored.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Relation>>, RelationError> {
    field
        .split(',')
        .map(str::trim)
        .filter(|group| !group.is_empty())
        .map(|group| group.split('|').map(parse_relation).collect())
        .collect()
}

fn parse_relation(item: &str) -> Result<Relation, RelationError> {
    let bad = || RelationError {
        item: item.trim().to_string(),
    };
    let item = item.trim();
    let (head, rest) = item
        .split_once(|c: char| c.is_whitespace() || c == '(' || c == '[' || c == '<')
        .map_or((item, ""), |(h, _)| (h, &item[h.len()..]));
    let name = head.split(':').next().unwrap_or_default();
    if name.is_empty() {
        return Err(bad());
    }
    let rest = rest.trim_start();
    let version = match rest.strip_prefix('(') {
        Some(inner) => {
            let inner = inner.split_once(')').ok_or_else(bad)?.0.trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .ok_or_else(bad)?;
            let op = VersionOp::parse(&inner[..split]).ok_or_else(bad)?;
            let version = inner[split..].trim();
            if version.is_empty() {
                return Err(bad());
            }
            Some((op, version.to_string()))
        }
        None => None,
    };
    Ok(Relation {
        name: name.to_string(),
        version,
    })
}

/// Why a package set cannot be resolved; the message names the package and the dependency.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{name}: not in the Packages index")]
    Missing { name: String },
    #[error("{package}: Depends {field}: {source}")]
    Malformed {
        package: String,
        field: String,
        source: RelationError,
    },
    #[error(
        "{package} depends on {wanted}, which the Packages index cannot satisfy{}",
        found_text(found)
    )]
    Unsatisfiable {
        package: String,
        wanted: String,
        found: Vec<String>,
    },
}

fn found_text(found: &[String]) -> String {
    if found.is_empty() {
        String::new()
    } else {
        format!(" (it has {})", found.join(", "))
    }
}

/// A `Packages` index held in memory: each package's newest version, and who provides what.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub packages: BTreeMap<String, Package>,
    /// Virtual package → the real packages providing it, with the provided version if stated.
    providers: BTreeMap<String, Vec<(String, Option<String>)>>,
}

impl Index {
    pub fn new(packages: BTreeMap<String, Package>) -> Index {
        let mut providers: BTreeMap<String, Vec<(String, Option<String>)>> = BTreeMap::new();
        for p in packages.values() {
            // A malformed Provides only hides the virtual name; the package itself is usable.
            for relation in parse_relations(&p.provides)
                .unwrap_or_default()
                .into_iter()
                .flatten()
            {
                let version = relation.version.map(|(_, v)| v);
                providers
                    .entry(relation.name)
                    .or_default()
                    .push((p.name.clone(), version));
            }
        }
        Index {
            packages,
            providers,
        }
    }

    /// The real package that satisfies `relation`: the package of that name if its version
    /// fits, else a provider (one already `chosen` first, then by name).
    fn satisfy(&self, relation: &Relation, chosen: &BTreeSet<String>) -> Option<&Package> {
        if let Some(p) = self.packages.get(&relation.name)
            && relation.accepts(&p.version)
        {
            return Some(p);
        }
        let providers = self.providers.get(&relation.name)?;
        let fits = |(_, version): &&(String, Option<String>)| match (&relation.version, version) {
            (None, _) => true,
            (Some(_), Some(v)) => relation.accepts(v),
            (Some(_), None) => false, // an unversioned Provides never satisfies a versioned dependency
        };
        let mut fitting: Vec<&String> = providers.iter().filter(fits).map(|(n, _)| n).collect();
        fitting.sort_by_key(|n| (!chosen.contains(*n), (*n).clone()));
        fitting.first().and_then(|n| self.packages.get(*n))
    }

    /// The packages installing `roots` needs, sorted by name: the `Pre-Depends`/`Depends`
    /// closure, where each group takes its first alternative that the index can satisfy.
    /// `Essential` packages are left out and their dependencies not followed.
    pub fn closure(&self, roots: &[&str]) -> Result<Vec<Package>, ResolveError> {
        let mut chosen: BTreeSet<String> = BTreeSet::new();
        let mut queue: VecDeque<&Package> = VecDeque::new();
        for root in roots {
            let p = self
                .packages
                .get(*root)
                .ok_or_else(|| ResolveError::Missing {
                    name: root.to_string(),
                })?;
            if chosen.insert(p.name.clone()) {
                queue.push_back(p);
            }
        }
        while let Some(package) = queue.pop_front() {
            let groups =
                parse_relations(&package.depends).map_err(|source| ResolveError::Malformed {
                    package: package.name.clone(),
                    field: package.depends.clone(),
                    source,
                })?;
            for group in groups {
                let pick = group.iter().find_map(|r| self.satisfy(r, &chosen));
                let Some(pick) = pick else {
                    let found = group
                        .iter()
                        .filter_map(|r| self.packages.get(&r.name))
                        .map(|p| format!("{} {}", p.name, p.version))
                        .collect();
                    return Err(ResolveError::Unsatisfiable {
                        package: package.name.clone(),
                        wanted: group
                            .iter()
                            .map(Relation::to_string)
                            .collect::<Vec<_>>()
                            .join(" | "),
                        found,
                    });
                };
                if !pick.essential && chosen.insert(pick.name.clone()) {
                    queue.push_back(pick);
                }
            }
        }
        Ok(chosen
            .iter()
            .map(|name| self.packages[name].clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, version: &str, depends: &str, provides: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            architecture: "amd64".into(),
            filename: format!("pool/{name}.deb"),
            size: 1,
            sha256: "0".repeat(64),
            depends: depends.into(),
            provides: provides.into(),
            essential: false,
        }
    }

    fn index(packages: Vec<Package>) -> Index {
        Index::new(packages.into_iter().map(|p| (p.name.clone(), p)).collect())
    }

    fn names(packages: &[Package]) -> Vec<&str> {
        packages.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn relations_parse() {
        let parsed =
            parse_relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, python3:any, foo [amd64] <!nocheck>, bar (<< 1:2~)")
                .unwrap();
        assert_eq!(parsed.len(), 5);
        assert_eq!(
            parsed[0][0],
            Relation {
                name: "libc6".into(),
                version: Some((VersionOp::GreaterOrEqual, "2.34".into()))
            }
        );
        assert_eq!(parsed[1].len(), 2);
        assert_eq!(parsed[1][1].to_string(), "debconf-2.0");
        assert_eq!(parsed[2][0].name, "python3");
        assert_eq!(parsed[3][0].to_string(), "foo");
        assert_eq!(parsed[4][0].to_string(), "bar (<< 1:2~)");
        assert!(parsed[4][0].accepts("1:1.9"));
        assert!(!parsed[4][0].accepts("1:2"));
        assert!(
            !parsed[4][0].accepts("1:2~rc1") && !parsed[4][0].accepts("2:0"),
            "2~rc1 sorts after 2~"
        );
        assert!(parse_relations("").unwrap().is_empty());
        assert_eq!(
            parse_relations("a (>= )").unwrap_err().to_string(),
            "malformed relation \"a (>= )\""
        );
        assert!(parse_relations("a (~ 1)").is_err());
        assert!(parse_relations("a (>= 1").is_err());
    }

    #[test]
    fn closure_takes_first_satisfiable_alternatives_and_virtuals() {
        let mut dpkg = package("dpkg", "1.21", "tar", "");
        dpkg.essential = true;
        let idx = index(vec![
            package(
                "qemu",
                "1:7.2",
                "libc6 (>= 2.34), libfoo | libbar, mail-agent, seabios, dpkg",
                "",
            ),
            package("libc6", "2.36", "libgcc-s1", ""),
            package("libgcc-s1", "12", "libc6 (>= 2.35)", ""),
            // not in the index: the second alternative is taken
            package("libbar", "1", "", ""),
            // virtual: two providers, the first by name
            package("postfix", "3", "", "mail-agent"),
            package("exim", "4", "", "mail-agent (= 4)"),
            // firmware without dependencies
            package("seabios", "1.16", "", ""),
            dpkg,
            package("tar", "1.34", "", ""),
        ]);
        let set = idx.closure(&["qemu"]).unwrap();
        assert_eq!(
            names(&set),
            ["exim", "libbar", "libc6", "libgcc-s1", "qemu", "seabios"],
            "essential dpkg and its tar are left out"
        );
    }

    #[test]
    fn a_provider_already_chosen_is_preferred_and_versions_are_enforced() {
        let idx = index(vec![
            package("root", "1", "zmail, mail-agent", ""),
            package("amail", "1", "", "mail-agent"),
            package("zmail", "1", "", "mail-agent"),
        ]);
        assert_eq!(names(&idx.closure(&["root"]).unwrap()), ["root", "zmail"]);

        let idx = index(vec![
            package("root", "1", "lib (>= 2) | other", ""),
            package("lib", "1.5", "", ""),
        ]);
        assert_eq!(
            idx.closure(&["root"]).unwrap_err().to_string(),
            "root depends on lib (>= 2) | other, which the Packages index cannot satisfy (it has lib 1.5)"
        );
        let idx = index(vec![
            package("root", "1", "virt (>= 2)", ""),
            package("p", "1", "", "virt"),
        ]);
        assert!(idx.closure(&["root"]).is_err(), "unversioned Provides");
        assert_eq!(
            idx.closure(&["nope"]).unwrap_err().to_string(),
            "nope: not in the Packages index"
        );
    }
}
