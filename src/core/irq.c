/* irq.c - thin dispatch to the accelerator's interrupt controllers (irq.h). */
#include "core/irq.h"

#include <errno.h>

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

bool irq_has_irqfd(const struct irq_chip *chip)
{
	const struct irq_ops *o = chip->ops;

	return o && o->msi_route_add && o->msi_route_set && o->msi_route_del &&
	       o->irqfd_assign && o->irqfd_deassign;
}

int irq_msi_route_add(const struct irq_chip *chip, uint64_t addr,
		      uint32_t data)
{
	if (!irq_has_irqfd(chip))
		return -ENOTSUP;
	return chip->ops->msi_route_add(chip->opaque, addr, data);
}

int irq_msi_route_set(const struct irq_chip *chip, unsigned gsi,
		      uint64_t addr, uint32_t data)
{
	if (!irq_has_irqfd(chip))
		return -ENOTSUP;
	return chip->ops->msi_route_set(chip->opaque, gsi, addr, data);
}

void irq_msi_route_del(const struct irq_chip *chip, unsigned gsi)
{
	if (irq_has_irqfd(chip))
		chip->ops->msi_route_del(chip->opaque, gsi);
}

int irq_irqfd_assign(const struct irq_chip *chip, unsigned gsi, int fd,
		     int resample_fd)
{
	if (!irq_has_irqfd(chip))
		return -ENOTSUP;
	return chip->ops->irqfd_assign(chip->opaque, gsi, fd, resample_fd);
}

int irq_irqfd_deassign(const struct irq_chip *chip, unsigned gsi, int fd)
{
	if (!irq_has_irqfd(chip))
		return -ENOTSUP;
	return chip->ops->irqfd_deassign(chip->opaque, gsi, fd);
}
