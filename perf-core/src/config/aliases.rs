//! Other names of a key, read as the key itself as each source is read: a source then
//! overrides the ones below it whichever name it uses.

use figment::{
    Error, Metadata, Profile, Provider,
    value::{Dict, Map},
};

use super::KEY_ALIASES;

/// A source whose aliased keys are renamed to the keys they stand for.
pub(super) struct Aliased<P>(pub(super) P);

impl<P: Provider> Provider for Aliased<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            for (alias, key) in KEY_ALIASES {
                let Some(value) = dict.remove(*alias) else {
                    continue;
                };
                if dict.contains_key(*key) {
                    let message = format!("`{alias}` is another name of `{key}`: give one");
                    return Err(Error::from(message).with_path(alias));
                }
                dict.insert((*key).to_owned(), value);
            }
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.0.profile()
    }
}
