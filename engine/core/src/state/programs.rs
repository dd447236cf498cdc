//! The programs of a shard: one slot per program (the program, its float, the names its card
//! views share), looked up by id; program changes replace a slot's program in place.

use super::State;
use crate::command::CardId;
use crate::outcome::{Approval, FloatTotals, Outcome, Rejection, TxnKind};
use crate::program::Program;

/// One program and the float of its cards.
pub(crate) struct ProgramSlot {
    pub program: Program,
    pub float: FloatTotals,
    /// The program id and tier names (in `program.tiers` order), shared by every card view.
    pub names: SlotNames,
}

/// Names a card view carries, made once per program version instead of once per reply.
pub(crate) struct SlotNames {
    pub id: std::sync::Arc<str>,
    pub tiers: Vec<std::sync::Arc<str>>,
}

impl SlotNames {
    pub fn of(p: &Program) -> SlotNames {
        SlotNames {
            id: p.id.as_str().into(),
            tiers: p.tiers.iter().map(|t| t.name.as_str().into()).collect(),
        }
    }
}

impl ProgramSlot {
    pub fn new(program: Program) -> ProgramSlot {
        ProgramSlot {
            names: SlotNames::of(&program),
            program,
            float: FloatTotals::default(),
        }
    }
}

impl State {
    pub(super) fn upsert_program(&mut self, p: &Program) -> Outcome {
        match self.program_index.get(&p.id) {
            Some(&i) => {
                if let Some(slot) = self.programs.get_mut(i as usize) {
                    slot.program = p.clone();
                    slot.names = SlotNames::of(p);
                }
            }
            None => {
                let Ok(i) = u16::try_from(self.programs.len()) else {
                    return Outcome::Rejected(Rejection::Invalid {
                        field: "id".to_string(),
                        reason: "too many programs".to_string(),
                    });
                };
                self.programs.push(ProgramSlot::new(p.clone()));
                self.program_index.insert(p.id.clone(), i);
            }
        }
        Outcome::Approved(Box::new(Approval::nothing(TxnKind::Program)))
    }

    pub(crate) fn program_at(&self, i: u16) -> &Program {
        &self.programs[i as usize].program
    }

    /// The program a card belongs to (for gateway-key scoping).
    pub fn program_of(&self, card_id: CardId) -> Option<&str> {
        self.card(card_id)
            .map(|c| self.program_at(c.program).id.as_str())
    }

    /// A program by id.
    pub fn program(&self, id: &str) -> Option<&Program> {
        self.program_index.get(id).map(|&i| self.program_at(i))
    }

    /// All programs, in the order they were first created.
    pub fn programs(&self) -> impl Iterator<Item = &Program> + '_ {
        self.programs.iter().map(|p| &p.program)
    }
}
