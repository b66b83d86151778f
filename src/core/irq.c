/* irq.c - thin dispatch to the accelerator's interrupt controllers (irq.h). */
#include "core/irq.h"

void irq_set_level(const struct irq_chip *chip, unsigned gsi, bool level)
{
	if (gsi < IRQ_MAX_GSI && chip->ops)
		chip->ops->set_level(chip->opaque, gsi, level);
}

void irq_pulse(const struct irq_chip *chip, unsigned gsi)
{
	irq_set_level(chip, gsi, true);
	irq_set_level(chip, gsi, false);
}

void irq_send_msi(const struct irq_chip *chip, uint64_t addr, uint32_t data)
{
	if (chip->ops && chip->ops->send_msi)
		chip->ops->send_msi(chip->opaque, addr, data);
}
