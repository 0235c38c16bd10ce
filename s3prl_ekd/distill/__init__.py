"""The method: target plans and schemes, the loss, the student and how it starts from a teacher."""
